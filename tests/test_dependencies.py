"""pyproject.toml declares ranges; constraints.txt pins the tested set inside them; the matrix holds both ends."""

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hf_rnn_seq2seq.modeling_rnn_seq2seq import TESTED_TRANSFORMERS
from helpers import PYPROJECT, compat_releases, package_transformers_range, pinned_versions

PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
DECLARED = {
    canonicalize_name(requirement.name): requirement
    for requirement in map(
        Requirement,
        PROJECT["dependencies"] + [extra for extras in PROJECT["optional-dependencies"].values() for extra in extras],
    )
}  # the extras too (test, demo): CI installs them from constraints.txt as well


def test_dependencies_are_ranges_not_pins():
    for name, requirement in DECLARED.items():
        operators = {spec.operator for spec in requirement.specifier}
        assert not operators & {"==", "==="}, f"{name} is pinned in pyproject.toml: {requirement}"


def test_the_constraints_pin_every_declared_dependency_inside_its_range():
    pins = pinned_versions()
    for name, requirement in DECLARED.items():
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"constraints.txt: {name}=={pins[name]}, outside {requirement}"


def test_the_matrix_proves_both_ends_of_the_declared_transformers_range():
    """The package's oldest transformers (CI's second run) and the pinned newest are matrix rows whose tokenizers and
    huggingface_hub lie inside the declared ranges; the model files' range spans the whole matrix."""
    releases = {release["transformers"]: release for release in compat_releases()}
    oldest, newest = package_transformers_range()
    assert newest == pinned_versions()["transformers"] == compat_releases()[-1]["transformers"]
    for end in (oldest, newest):
        assert end in releases, f"transformers {end}, an end of the declared range, is not in compat-matrix.toml"
        for name, version in releases[end].items():
            requirement = DECLARED[canonicalize_name(name)]
            assert requirement.specifier.contains(version), f"{name}=={version} (matrix row {end}) outside {requirement}"
    assert TESTED_TRANSFORMERS == (compat_releases()[0]["transformers"], newest)
