"""IoT Edge provisioning configs: validate, render (1.2+ TOML / 1.1 YAML) and read back."""

from pipeline.edgeconfig.model import (
    ConfigFormat,
    ConfigParseError,
    EdgeConfigError,
    InvalidConfigValue,
    ParsedProvisioning,
    ProvisioningConfig,
    RenderedConfig,
    format_for_version,
)
from pipeline.edgeconfig.parse import parse_provisioning
from pipeline.edgeconfig.render import render

__all__ = [
    "ConfigFormat",
    "ConfigParseError",
    "EdgeConfigError",
    "InvalidConfigValue",
    "ParsedProvisioning",
    "ProvisioningConfig",
    "RenderedConfig",
    "format_for_version",
    "parse_provisioning",
    "render",
]
