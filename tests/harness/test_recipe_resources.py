"""The recipe key ``resources``: declared by every committed recipe, validated, kept out of the key."""

from __future__ import annotations

import pytest
from filterbench.harness.errors import RecipeError
from filterbench.harness.recipes import RESOURCE_CLASSES, list_recipes, load_recipe

BODY = "version: 1\nname: demo\nsampler: {name: all}\n"


def test_every_committed_recipe_declares_its_resource_class():
    undeclared = [r.name for r in list_recipes() if r.resources not in RESOURCE_CLASSES]
    assert undeclared == [], (f"add `resources: {{class: public|private|oracle, uses: [...]}}` to "
                              f"baselines/<name>.yaml for {undeclared} (docs/leaderboard.md, 'Resources')")


def test_only_the_nano_oracle_uses_the_oracle_class():
    assert {r.name for r in list_recipes() if r.resources == "oracle"} == {"oracle"}


def test_resources_do_not_change_the_recipe_key(tmp_path):
    plain, declared = tmp_path / "plain.yaml", tmp_path / "declared.yaml"
    plain.write_text(BODY)
    declared.write_text(BODY + "resources: {class: private, uses: [HQITP-350M]}\n")
    a, b = load_recipe(plain), load_recipe(declared)
    assert (a.resources, b.resources, b.resources_uses) == (None, "private", ("HQITP-350M",))
    assert a.key() == b.key()  # a declaration changes no output, so records keep their keys


@pytest.mark.parametrize("value", ["public", "{class: secret}", "{class: public, uses: HQITP}",
                                   "{class: public, extra: 1}"])
def test_malformed_resources_are_rejected(tmp_path, value):
    path = tmp_path / "bad.yaml"
    path.write_text(BODY + f"resources: {value}\n")
    with pytest.raises(RecipeError, match="resources"):
        load_recipe(path)
