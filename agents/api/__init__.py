"""Public REST API of agents' data (F-42): agent profiles, customers, appointments."""
