"""`ConfigObject`: the config round trip, repr and equality shared by schedules, granularities
and mask types (small value objects described entirely by their constructor arguments)."""


class ConfigObject:
    """Base for value objects whose `get_config()` returns their constructor arguments."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))
