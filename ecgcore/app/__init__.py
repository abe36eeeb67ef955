"""The pages' Streamlit-free view-models: what each page computes and draws."""
