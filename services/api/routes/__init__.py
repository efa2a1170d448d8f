"""HTTP routes of the control API, one module per resource."""
