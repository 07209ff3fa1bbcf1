"""The experiment runner: the paper's pipeline from one YAML (``rayrg run``)."""
