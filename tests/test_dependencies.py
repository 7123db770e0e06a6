"""pyproject.toml declares lower bounds that CI tests and no caps below a next major release; constraints.txt pins
the tested set inside them; the matrix holds both ends of the transformers range."""

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def lower_bound(requirement: Requirement) -> Version:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    assert len(bounds) == 1, f"{requirement}: declare one lower bound (>=), the oldest release CI tests"
    return bounds[0]


def oldest_pass_releases() -> dict[str, str]:
    """What CI's second pass runs instead of the pinned versions: the matrix row of the oldest admitted transformers."""
    oldest = package_transformers_range()[0]
    row = next(release for release in compat_releases() if release["transformers"] == oldest)
    return {canonicalize_name(name): version for name, version in row.items()}


def test_dependencies_are_ranges_not_pins():
    for name, requirement in DECLARED.items():
        operators = {spec.operator for spec in requirement.specifier}
        assert not operators & {"==", "===", "~="}, f"{name} is pinned in pyproject.toml: {requirement}"


def test_no_upper_bound_stops_before_the_next_major_release():
    for name, requirement in DECLARED.items():
        next_major = Version(str(lower_bound(requirement).major + 1))
        for spec in requirement.specifier:
            assert spec.operator in (">=", "<"), f"{name}: {spec} (only >= and a < at the next major release)"
            if spec.operator == "<":
                assert Version(spec.version) == next_major, f"{name}: {spec} caps below its next major {next_major}"


def test_every_lower_bound_is_a_release_ci_tests():
    pins, oldest_pass = pinned_versions(), oldest_pass_releases()
    for name, requirement in DECLARED.items():
        tested = {Version(pins[name])} | ({Version(oldest_pass[name])} if name in oldest_pass else set())
        assert lower_bound(requirement) in tested, (
            f"{name}: lower bound {lower_bound(requirement)} is not a release CI tests ({sorted(map(str, tested))})"
        )


def test_the_constraints_pin_every_declared_dependency_inside_its_range():
    pins = pinned_versions()
    for name, requirement in DECLARED.items():
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"constraints.txt: {name}=={pins[name]}, outside {requirement}"


def test_the_matrix_proves_both_ends_of_the_declared_transformers_range():
    """The package's oldest transformers (CI's second pass) and the pinned newest are matrix rows whose tokenizers and
    huggingface_hub lie inside the declared ranges; the model files' range spans the whole matrix."""
    releases = {release["transformers"]: release for release in compat_releases()}
    oldest, newest = package_transformers_range()
    assert newest == compat_releases()[-1]["transformers"]
    for end in (oldest, newest):
        assert end in releases, f"transformers {end}, an end of the tested range, is not in compat-matrix.toml"
        for name, version in releases[end].items():
            if canonicalize_name(name) not in DECLARED:
                continue  # kernels: what that release imports, not a dependency of the package
            requirement = DECLARED[canonicalize_name(name)]
            assert requirement.specifier.contains(version), f"{name}=={version} (matrix row {end}) outside {requirement}"
    assert TESTED_TRANSFORMERS == (compat_releases()[0]["transformers"], newest)
