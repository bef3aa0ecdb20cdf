"""Choosing module backends by name, and the set of modules a station runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import SIMULATION_PATH, ModuleConfig, SessionConfig, StationConfig, load_config
from kiosk.drivers import registry
from kiosk.drivers.base import ModuleKind
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.drivers.signature.touch import TouchSignaturePad
from kiosk.errors import ConfigError, DeviceUnavailable, DriverError, KioskError, UnknownBackend
from kiosk.health.station import StationModules

ROOT = Path(__file__).resolve().parent.parent

FAKES = {
    ModuleKind.CAMERA: FakeCamera,
    ModuleKind.FINGERPRINT: FakeFingerprintReader,
    ModuleKind.SIGNATURE: FakeSignaturePad,
    ModuleKind.INDICATORS: FakeIndicators,
}


def station(tmp_path: Path, **drivers: str | ModuleConfig) -> StationConfig:
    """A station config with a fake for every kind not named in ``drivers``."""
    modules = {}
    for kind in ModuleKind:
        module = drivers.get(str(kind), "fake")
        modules[kind] = module if isinstance(module, ModuleConfig) else ModuleConfig(module)
    return StationConfig(
        tmp_path / "station.toml", "TEST-01", "0000", "id", tmp_path, modules, SessionConfig()
    )


class DeadCamera(FakeCamera):
    """A camera whose cable is not plugged in: open() fails."""

    def _open(self) -> None:
        raise DeviceUnavailable("no camera on the CSI port")


# -- the registry ---------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ModuleKind))
def test_every_kind_has_a_fake_backend(kind):
    assert "fake" in registry.available(kind)
    assert registry.backend_class(kind, "fake") is FAKES[kind]


def test_the_touchscreen_is_a_signature_backend():
    assert registry.available(ModuleKind.SIGNATURE) == ["fake", "touch"]
    assert registry.backend_class(ModuleKind.SIGNATURE, "touch") is TouchSignaturePad
    assert "touch" not in registry.available(ModuleKind.CAMERA)


def test_create_passes_options_and_does_not_open():
    camera = registry.create(ModuleKind.CAMERA, "fake", {"serial": "CAM-0042", "delay": 0.0})
    assert isinstance(camera, FakeCamera)
    assert camera.info().serial == "CAM-0042"
    assert camera.closed
    pad = registry.create(ModuleKind.SIGNATURE, "touch", {"aspect": 2.0})
    assert isinstance(pad, TouchSignaturePad)
    assert pad.info().driver == "touch"


def test_create_without_options_uses_the_defaults():
    reader = registry.create(ModuleKind.FINGERPRINT, "fake")
    assert reader.info().serial == "SIM-FPR-0001"


def test_an_unknown_name_lists_what_is_installed():
    with pytest.raises(UnknownBackend) as caught:
        registry.backend_class(ModuleKind.SIGNATURE, "wacom")
    message = str(caught.value)
    assert "signature" in message and "'wacom'" in message
    assert message.endswith("installed: fake, touch")
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, DriverError) and isinstance(caught.value, KioskError)


def test_create_with_an_unknown_name_is_the_same_error():
    with pytest.raises(UnknownBackend, match="no camera driver named 'polaroid'; installed: fake"):
        registry.create(ModuleKind.CAMERA, "polaroid", {"serial": "x"})


def test_names_are_case_sensitive():
    with pytest.raises(UnknownBackend):
        registry.backend_class(ModuleKind.CAMERA, "Fake")


BAD_OPTIONS = {
    "unknown behaviour": (ModuleKind.FINGERPRINT, "fake", {"script": ["wet"]}, "wet"),
    "fail_on_call zero": (ModuleKind.CAMERA, "fake", {"fail_on_call": 0}, "counts from 1"),
    "negative aspect": (ModuleKind.SIGNATURE, "touch", {"aspect": -3.0}, "got -3.0"),
    "delay not a number": (ModuleKind.CAMERA, "fake", {"delay": "soon"}, "soon"),
    "delay beyond a float": (ModuleKind.CAMERA, "fake", {"delay": 2**2000}, "too large"),
    "fail_on_call a string": (ModuleKind.FINGERPRINT, "fake", {"fail_on_call": "3"}, "'<'"),
}


@pytest.mark.parametrize(
    ("kind", "name", "options", "detail"), BAD_OPTIONS.values(), ids=BAD_OPTIONS
)
def test_bad_options_are_a_config_error_naming_the_driver(kind, name, options, detail):
    with pytest.raises(ConfigError) as caught:
        registry.create(kind, name, options)
    message = str(caught.value)
    assert message.startswith(f"{kind} driver {name!r} does not accept these options: ")
    assert detail in message


def test_an_unknown_option_names_the_options_and_the_closest_one():
    with pytest.raises(ConfigError) as caught:
        registry.create(ModuleKind.CAMERA, "fake", {"serail": "CAM-1"})
    assert str(caught.value) == (
        "serail: expected an option of the camera driver 'fake' "
        "(script, fail_on_call, serial, delay, still_s, fps, still_size); "
        "got an unknown option (did you mean 'serial'?)"
    )


def test_an_unknown_option_with_nothing_close_has_no_suggestion():
    with pytest.raises(ConfigError, match=r"got an unknown option$"):
        registry.create(ModuleKind.INDICATORS, "fake", {"resolution": "640x480"})


def test_a_long_odd_option_value_gives_a_short_one_line_error():
    with pytest.raises(ConfigError) as caught:
        registry.create(ModuleKind.CAMERA, "fake", {"script": ["face\n" * 100_000]})
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and len(message) < 400
    assert "valid behaviours are" in message


def test_option_names_come_from_the_constructor():
    assert registry.option_names(FakeCamera) == [
        "script",
        "fail_on_call",
        "serial",
        "delay",
        "still_s",
        "fps",
        "still_size",
    ]
    assert registry.option_names(TouchSignaturePad) == ["serial", "aspect"]

    class AnyOptions(FakeIndicators):
        def __init__(self, **options: object) -> None:
            super().__init__()

    assert registry.option_names(AnyOptions) is None  # takes anything: nothing to check


# -- the station's modules --------------------------------------------------------


def test_the_simulation_station_gets_one_fake_per_kind():
    modules = StationModules.from_config(load_config(SIMULATION_PATH))
    for kind, module in modules.by_kind().items():
        assert type(module) is FAKES[kind]
    assert modules.simulated == list(ModuleKind)


def test_the_example_station_file_builds_its_real_modules():
    """Built, not opened: the drivers it names are installed and take its options."""
    modules = StationModules.from_config(load_config(ROOT / "docs" / "station.example.toml"))
    drivers = {kind: type(module).__name__ for kind, module in modules.by_kind().items()}
    assert drivers == {
        ModuleKind.CAMERA: "Picamera2Camera",
        ModuleKind.FINGERPRINT: "ZhiantecReader",
        ModuleKind.SIGNATURE: "TouchSignaturePad",
        ModuleKind.INDICATORS: "GpioIndicators",
    }


def test_from_config_passes_each_module_its_options(tmp_path):
    config = station(tmp_path, fingerprint=ModuleConfig("fake", {"serial": "FPR-7"}))
    modules = StationModules.from_config(config)
    assert modules.fingerprint.info().serial == "FPR-7"
    assert modules.camera.info().serial == "SIM-CAM-0001"


def test_from_config_builds_the_named_backend(tmp_path):
    modules = StationModules.from_config(station(tmp_path, signature="touch"))
    assert type(modules.signature) is TouchSignaturePad
    assert modules.simulated == [ModuleKind.CAMERA, ModuleKind.FINGERPRINT, ModuleKind.INDICATORS]


def test_simulate_forces_fakes_whatever_the_config_names(tmp_path):
    config = station(
        tmp_path,
        signature=ModuleConfig("touch", {"aspect": 2.0}),
        camera=ModuleConfig("picamera2", {"sensor": "imx708"}),  # not installed: never looked up
    )
    modules = StationModules.from_config(config, simulate=True)
    for kind, module in modules.by_kind().items():
        assert type(module) is FAKES[kind]
    assert modules.simulated == list(ModuleKind)


def test_from_config_with_an_unknown_driver_names_file_and_key(tmp_path):
    with pytest.raises(UnknownBackend) as caught:
        StationModules.from_config(station(tmp_path, camera="polaroid"))
    installed = ", ".join(registry.available(ModuleKind.CAMERA))
    assert installed.startswith("fake, ")  # the real cameras are installed too
    assert str(caught.value) == (
        f"{tmp_path / 'station.toml'}: modules.camera.driver: "
        f"expected an installed camera driver ({installed}); got 'polaroid'"
    )


def test_an_unknown_driver_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    path = tmp_path / "station.toml"
    path.write_text(SIMULATION_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("KIOSK_SIGNATURE_DRIVER", "wacom")
    with pytest.raises(UnknownBackend) as caught:
        StationModules.from_config(load_config(path))
    assert str(caught.value) == (
        f"{path}: modules.signature.driver: expected an installed signature driver "
        "(fake, touch); got 'wacom' from KIOSK_SIGNATURE_DRIVER in the environment"
    )


def test_from_config_with_an_unknown_option_names_file_key_and_suggestion(tmp_path):
    config = station(tmp_path, camera=ModuleConfig("fake", {"serail": "CAM-1"}))
    with pytest.raises(ConfigError) as caught:
        StationModules.from_config(config)
    assert str(caught.value) == (
        f"{config.path}: modules.camera.serail: expected an option of the camera driver 'fake' "
        "(script, fail_on_call, serial, delay, still_s, fps, still_size); "
        "got an unknown option (did you mean 'serial'?)"
    )


def test_from_config_with_a_bad_option_value_names_file_and_table(tmp_path):
    config = station(tmp_path, signature=ModuleConfig("touch", {"aspect": -1.0}))
    with pytest.raises(ConfigError) as caught:
        StationModules.from_config(config)
    message = str(caught.value)
    assert message.startswith(
        f"{config.path}: modules.signature: "
        "signature driver 'touch' does not accept these options: "
    )
    assert "aspect" in message and "-1.0" in message


def test_a_dead_module_does_not_stop_the_others_from_opening():
    modules = StationModules(
        camera=DeadCamera(),
        fingerprint=FakeFingerprintReader(),
        signature=FakeSignaturePad(),
        indicators=FakeIndicators(),
    )
    failures = modules.open()
    try:
        assert list(failures) == [ModuleKind.CAMERA]
        assert isinstance(failures[ModuleKind.CAMERA], DeviceUnavailable)
        assert "CSI port" in str(failures[ModuleKind.CAMERA])
        assert modules.camera.closed
        assert not modules.fingerprint.closed
        assert not modules.signature.closed
        assert not modules.indicators.closed
    finally:
        modules.close()
    assert all(module.closed for module in modules.by_kind().values())
    modules.close()  # idempotent, like each module's close()


def test_open_with_every_module_working_reports_no_failures(tmp_path):
    modules = StationModules.from_config(station(tmp_path))
    assert modules.open() == {}
    modules.close()


def test_by_kind_and_infos_cover_every_kind(tmp_path):
    modules = StationModules.from_config(station(tmp_path))
    assert list(modules.by_kind()) == list(ModuleKind)
    infos = modules.infos()
    assert all(infos[kind].kind is kind for kind in ModuleKind)
