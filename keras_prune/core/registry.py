"""One registry per kind of configurable object: `get`, `serialize`, `deserialize` that behave the
same for schedules, granularities, mask types, criteria and allocations.

`get` accepts an instance (returned as is), an alias string (a registered name, built with no
arguments), a pair `(alias, {arguments})`, a serialized dict (what
`keras.saving.serialize_keras_object` returns, user classes included), and, where the kind
allows it, a plain function (wrapped by `from_function`).
Anything else is refused with a message naming the argument, what was received and the names
that work.
"""

import keras

from keras_prune.core import validation


class Registry:
    """Aliases and (de)serialization of one kind of keras_prune object.

    Args:
        kind: the argument name users pass these as (e.g. "granularity"), used in messages.
        base: the base class every instance derives from.
        aliases: `{name: factory}`; a factory is a class or a function of no arguments.
        from_function: None, or a callable turning a user function into an instance.
        examples: a short example for error messages, e.g. "kp.granularity.Block((1, 4))".

    Example:

    ```python
    kp.granularity.REGISTRY.get("2:4")        # NofM(n=2, m=4)
    config = kp.granularity.REGISTRY.serialize(kp.granularity.Block((1, 4)))
    kp.granularity.REGISTRY.deserialize(config)
    ```
    """

    def __init__(self, kind, base, aliases, from_function=None, examples=""):
        self.kind = kind
        self.base = base
        self.aliases = dict(aliases)
        self.from_function = from_function
        self.examples = examples

    def names(self):
        return sorted(self.aliases)

    def get(self, identifier):
        """An instance from an instance, an alias, a serialized dict or (if allowed) a
        function."""
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            if identifier in self.aliases:
                return self.aliases[identifier]()
            raise ValueError(
                f"Unknown {self.kind} {identifier!r}. Expected one of {self.names()}"
                + (f", or an instance such as {self.examples}" if self.examples else "")
                + f". Received: {self.kind}={identifier!r}."
                + validation.did_you_mean(identifier, self.names())
            )
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if (
            isinstance(identifier, tuple)
            and len(identifier) == 2
            and isinstance(identifier[0], str)
            and isinstance(identifier[1], dict)
        ):
            name, arguments = identifier
            if name not in self.aliases:
                return self.get(name)  # raises, naming the known names
            return self.aliases[name](**arguments)
        if (
            self.from_function is not None
            and callable(identifier)
            and not isinstance(identifier, type)
        ):
            return self.from_function(identifier)
        accepted = "a name from " + str(self.names())
        if self.examples:
            accepted += f", an instance such as {self.examples}"
        accepted += ", (name, {arguments}), a serialized config"
        if self.from_function is not None:
            accepted += ", or a function"
        raise TypeError(
            f"Expected `{self.kind}` to be {accepted}. Received: {self.kind}={identifier!r} "
            f"(of type {type(identifier).__name__})"
        )

    def serialize(self, instance):
        """A JSON-able config of `instance` (class and constructor arguments)."""
        return keras.saving.serialize_keras_object(self.get(instance))

    def deserialize(self, config, custom_objects=None):
        """The instance `serialize` described (user classes must be registered with
        `keras.saving.register_keras_serializable`)."""
        instance = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
        if not isinstance(instance, self.base):
            raise TypeError(
                f"Expected a serialized {self.kind}. Received a config of "
                f"{type(instance).__name__}: {config!r}"
            )
        return instance
