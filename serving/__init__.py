"""irismodel-operator."""
