"""The provenance file system: its records, their agreement with the data after crashes, the queries."""
