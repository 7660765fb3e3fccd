"""CI regression tables: the golden suite, comparison of record sets against tolerance gates,
and the history of a folder of records."""
