"""The UI layer: one module per tab. The only code that imports streamlit; it composes domain packages."""
