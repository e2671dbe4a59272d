"""After the call (F-76): summary and extracted fields by the text model."""
