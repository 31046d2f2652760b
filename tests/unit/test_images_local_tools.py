"""Config writers of the local image tooling: registry config, htpasswd, containers.conf."""
from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from irisop_deploy.images import baseimage
from irisop_deploy.local.registry import htpasswd_line, registry_config, write_htpasswd


def test_registry_config_plain(tmp_path):
    config = registry_config(5123, tmp_path / "storage")
    assert config["http"]["addr"] == "127.0.0.1:5123"  # loopback only
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "storage")
    assert config["storage"]["delete"]["enabled"] is True
    assert "auth" not in config


def test_registry_config_htpasswd_and_token(tmp_path):
    assert registry_config(1, tmp_path, tmp_path / "htpasswd")["auth"]["htpasswd"]["path"] == str(tmp_path / "htpasswd")
    token = {"realm": "http://127.0.0.1:1/token", "service": "s", "issuer": "i", "rootcertbundle": "/ca.pem"}
    assert registry_config(1, tmp_path, token_auth=token)["auth"] == {"token": token}
    with pytest.raises(ValueError):
        registry_config(1, tmp_path, tmp_path / "htpasswd", token)


def test_htpasswd_is_bcrypt(tmp_path):
    user, hashed = htpasswd_line("AWS", "123456789012-auth-token").split(":", 1)
    assert user == "AWS" and hashed.startswith("$2")
    assert bcrypt.checkpw(b"123456789012-auth-token", hashed.encode())
    path = write_htpasswd(tmp_path / "auth" / "htpasswd", {"a": "1", "b": "2"})
    assert [line.split(":")[0] for line in path.read_text().splitlines()] == ["a", "b"]
    assert path.stat().st_mode & 0o077 == 0  # the hashes are secrets too


def test_containers_conf(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISOP_CACHE", str(tmp_path))
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    path = baseimage.containers_conf()
    assert path == Path(tmp_path) / "containers" / "containers.conf"
    text = path.read_text()
    assert "default_ulimits = []" in text and 'runtime = "runc"' in text
    assert baseimage.container_env()["CONTAINERS_CONF"] == str(path)
    monkeypatch.setenv("CONTAINERS_CONF", "/etc/mine.conf")
    assert baseimage.container_env()["CONTAINERS_CONF"] == "/etc/mine.conf"  # an explicit choice wins


def test_image_storage_lives_under_the_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISOP_CACHE", str(tmp_path))
    monkeypatch.delenv("CONTAINERS_STORAGE_CONF", raising=False)
    path = Path(baseimage.container_env()["CONTAINERS_STORAGE_CONF"])
    assert path == tmp_path / "containers" / "storage.conf"
    assert f'graphroot = "{tmp_path}/containers/storage"' in path.read_text()
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", "/etc/mine.conf")
    assert baseimage.container_env()["CONTAINERS_STORAGE_CONF"] == "/etc/mine.conf"
