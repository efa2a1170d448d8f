"""The workerd side of the data plane: gateway config, process supervision, recycling."""
