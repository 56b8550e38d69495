from ecg_assets.defs.resources import TorchDeviceResource


def test_cpu_settings_keep_the_cores_for_the_model():
    settings = TorchDeviceResource(device="cpu").device_settings()
    assert settings.device.type == "cpu" and settings.amp_dtype is None
    assert not settings.pin_memory and not settings.non_blocking
    assert settings.prefetch_batches == 0 and not settings.compile


def test_cpu_options_can_be_overridden():
    settings = TorchDeviceResource(device="cpu", compile=True, prefetch_batches=3).device_settings()
    assert settings.compile and settings.prefetch_batches == 3
