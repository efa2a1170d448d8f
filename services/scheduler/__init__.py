"""The cron scheduler: fires the projected schedule once per slot across replicas."""
