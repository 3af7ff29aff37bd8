"""Text data: tokenizers, padding collate, the built-in BBC News corpus and text sources."""
