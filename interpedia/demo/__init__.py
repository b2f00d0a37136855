"""The embedded demo: real offline English text, a tiny model and SAE trained on CPU, dashboards, served."""
