"""Reading model files: safe YAML with positions, then the pydantic schemas."""
