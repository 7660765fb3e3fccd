"""The framework-neutral model: every released FCN described once as data (zoo -> spec), its
geometry, initialisation, inputs and memory needs."""
