"""The engine: apply a separator, or a bag of them, to tracks of any length, whole or streamed."""
