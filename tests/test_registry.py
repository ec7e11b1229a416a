import pytest

from bench.api import DEFENSES, Defense, DefenseInfo, create_defense, create_model
from bench.errors import MatrixError, UnknownNameError
from bench.registry import Registry, check_params


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as e:
        create_model("piq")
    assert "unknown model 'piq'" in str(e.value) and "did you mean piqe" in str(e.value)


def test_every_builtin_kind_is_registered():
    create_defense("none")
    for name in ("jpeg", "ortho+act+prune"):
        assert name in DEFENSES


def test_registering_the_same_name_twice_is_refused():
    reg = Registry("defense", "bench.defenses")

    class A(Defense):
        info = DefenseInfo(name="a", kind="none")

    class B(Defense):
        info = DefenseInfo(name="a", kind="none")

    reg.register(A)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(B)


def test_parameters_are_checked_by_name_and_type():
    assert check_params("defense", "jpeg", {"quality": 50}, {"quality": 30}) == {"quality": 30}
    with pytest.raises(MatrixError, match="unknown parameter.*qualty.*allowed: quality"):
        check_params("defense", "jpeg", {"quality": 50}, {"qualty": 30})
    with pytest.raises(MatrixError, match="must be int"):
        check_params("defense", "jpeg", {"quality": 50}, {"quality": "high"})


def test_non_differentiable_defense_must_declare_a_surrogate():
    with pytest.raises(ValueError, match="surrogate"):
        DefenseInfo(name="x", kind="purification", differentiable=False)
