"""docs/upstream-api.yaml says what the code does: every profile field is documented."""

import os

import yaml  # PyYAML, installed with esptool

from gateway import builtin_profiles

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "upstream-api.yaml")
SCHEMAS = {("gbt39046", "rating"): "RatingGbt39046", ("zhejiang", "rating"): "RatingZhejiang",
           ("gbt39046", "case"): "CaseGbt39046", ("zhejiang", "case"): "CaseZhejiang"}


def test_every_profile_field_is_documented():
    with open(DOC, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert doc["openapi"].startswith("3.")
    assert "/v1/batches" in doc["paths"]
    for (name, kind), schema in SCHEMAS.items():
        documented = set(doc["components"]["schemas"][schema]["properties"])
        fields = builtin_profiles.BUILTIN[name]["rating_fields" if kind == "rating" else "case_fields"]
        mapped = {row[1] for row in fields}
        assert mapped == documented, (schema, mapped ^ documented)
    assert doc["components"]["schemas"]["Batch"]["properties"]["profile"]["enum"] == \
        sorted(builtin_profiles.BUILTIN)
