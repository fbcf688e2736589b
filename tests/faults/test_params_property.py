"""The params loader on arbitrary input: a valid Params or one ParamsError line naming the file and key."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catride_core.config import Params, ParamsError, parse_params

SECTIONS = {name: type(getattr(Params(), name)) for name in Params.model_fields if name != "models"}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["77/255", "1/0", "8/255", "mnist5k", "ca_tride", "es", "~/x"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)


@st.composite
def documents(draw):
    """A params document: real section and key names (so validation goes deep) with arbitrary values, plus noise."""
    document = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "models", "nonsense"]), max_size=4, unique=True)):
        if section == "models" or section == "nonsense":
            document[section] = draw(values)
            continue
        fields = list(SECTIONS[section].model_fields)
        keys = draw(st.lists(st.sampled_from([*fields, "unknown_key"]), max_size=4, unique=True))
        document[section] = {key: draw(values) for key in keys}
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_gives_params_or_one_line_naming_the_key(document):
    try:
        params = parse_params(document, source="params.yaml")
    except ParamsError as error:
        message = str(error)
        assert "\n" not in message and message.startswith("params.yaml: ")
        key = message.split(": ")[1]
        assert key.split(".")[0] in document, message  # the key named is one the document holds
    else:
        assert isinstance(params, Params)
        assert params.model_dump() == parse_params(params.model_dump(mode="json", by_alias=True)).model_dump()


@settings(max_examples=100, deadline=None)
@given(values)
def test_any_top_level_value_is_refused_or_read(document):
    try:
        parse_params(document)
    except ParamsError as error:
        assert "\n" not in str(error) and str(error).startswith("params.yaml: ")
