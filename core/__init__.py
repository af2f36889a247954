"""The shared runtime every command and every training or benchmark program stands on: files, sequences and
tables, genomic regions, model loading, windows and batching, embeddings, run and model-folder records, plots, errors
and the command-line vocabulary. It imports only modeling_nucel and tokenization (docs/design.md, "Layering")."""
