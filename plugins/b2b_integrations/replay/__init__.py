"""Replay: put what failed through its flow again, for the CLI and the instances API.

Stored webhooks and quarantined inbox messages go back into their inbox as new asset events; dead-lettered
events are sent to their target again with the flow's own delivery rules. This package sits beside the CLI,
above the layers it drives (the config and planner, the ledgers, the inbox), so none of those imports it.
"""
