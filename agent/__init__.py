"""The Nengtan gateway agent: poll meters, commit every reading durably, forward signed batches."""
