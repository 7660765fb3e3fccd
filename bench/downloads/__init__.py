"""Downloads: the catalogue of fetchable files, verified and locked HTTP(S) fetching, safe
archive extraction, and provisioning of data roots and weights."""
