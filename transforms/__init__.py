"""Pure pandas transforms: no Prefect, no files, no clock, no environment."""
