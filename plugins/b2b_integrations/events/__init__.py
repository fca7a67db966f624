"""Events our own app publishes (app events): their envelope, who subscribes to them, and their delivery."""
