"""The one error a build raises for a problem in the app or the template (as opposed to a bad
community file, ``infra.config.ConfigError``, or a dependency, ``infra.vendoring.VendoringError``)."""


class BuildError(RuntimeError):
    pass
