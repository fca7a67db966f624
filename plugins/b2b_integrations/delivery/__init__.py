"""Delivery targets for the ``deliver`` step: SFTP, email, Slack, HTTP upload, local folder/object storage,
SMS.

``config`` validates target options, ``messages`` fills placeholders, ``base`` holds the report file and
the protocol every target follows; one module per target does the I/O. :func:`build_target` is the one
place a target is made from its options.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2b_integrations.delivery.base import DeliveryTarget
    from b2b_integrations.delivery.config import TargetBase

# type -> class; imported when used, so a flow that only emails never imports paramiko or fsspec.
TARGET_CLASSES: dict[str, str] = {
    "sftp": "b2b_integrations.delivery.sftp.SftpDeliveryTarget",
    "email": "b2b_integrations.delivery.smtp.EmailDeliveryTarget",
    "slack": "b2b_integrations.delivery.slack.SlackDeliveryTarget",
    "http": "b2b_integrations.delivery.http_upload.HttpDeliveryTarget",
    "local": "b2b_integrations.delivery.local.LocalDeliveryTarget",
    "sms": "b2b_integrations.delivery.sms.SmsDeliveryTarget",
}


def build_target(config: TargetBase, conn_id: str | None) -> DeliveryTarget:
    """The target for validated options and the Airflow connection id that fills its slot."""
    module, _, name = TARGET_CLASSES[config.type].rpartition(".")  # type: ignore[attr-defined]
    target: DeliveryTarget = getattr(import_module(module), name)(config, conn_id)
    return target
