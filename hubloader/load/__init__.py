"""One model load, from a parsed reference to a ready model::

    resolve (reference -> local directory) -> config (config.json -> dataclass)
    -> registry (model_type x task -> class) -> modeling (build on meta, size check)
    -> weights / landing (read, assign, verify keys) ;  saving writes the same layout back

``checkpoint_keys`` holds the declarative key rules, ``features`` the downstream-platform
interface every model implements, ``remote_code`` the trusted-code packages a load may build
from, ``flagai_rules`` what FlagAI's files and arguments leave unsaid.
"""
