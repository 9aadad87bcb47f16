"""The shared zone: nodes no container owns, filled by zoned with shared files; shared tmpfs."""
