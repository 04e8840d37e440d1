"""File systems written against the bento-user file-system API."""
