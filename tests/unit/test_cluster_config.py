"""ClusterConfig loading and validation: every bad value is caught before AWS is asked anything."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from irisop_deploy.aws import validate
from irisop_deploy.aws.config import ClusterConfig, ConfigError, defaults_yaml, fields, load


def _problems(**values) -> list[str]:
    return validate.problems(ClusterConfig(**{"region": "us-east-1", **values}))


@pytest.fixture(autouse=True)
def _no_ambient_region(monkeypatch, tmp_path):
    """Each test sees only the region sources it sets (no developer profile, no shell variable)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def test_defaults_are_valid_and_every_field_is_described():
    assert _problems() == []
    for f in fields():
        assert f.metadata["description"], f.name


def test_printed_defaults_load_back_to_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "cluster.yaml"
    path.write_text(defaults_yaml())
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert load(path) == ClusterConfig(region="us-east-1")
    assert "# number of worker nodes (>= 1)\nnode_count: 2" in defaults_yaml()


def test_flags_override_the_file_and_dashed_keys_work(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"node-count": 3, "region": "eu-west-1", "zones": ["eu-west-1b"]}))
    cfg = load(path, {"node_count": "5", "zones": "eu-west-1a,eu-west-1c", "tags": "team=ml,env=dev", "region": None})
    assert (cfg.node_count, cfg.region, cfg.zones) == (5, "eu-west-1", ["eu-west-1a", "eu-west-1c"])
    assert cfg.tags == {"team": "ml", "env": "dev"}


@pytest.mark.parametrize("content, message", [
    ("node_count: two\n", "node_count: expected an integer"),
    ("node_count: true\n", "node_count: expected an integer"),
    ("nodes: 3\n", "unknown setting 'nodes'"),
    ("zones: us-east-1a\nadmin_instance: maybe\n", "admin_instance: expected true/false"),
    ("- a\n- b\n", "expected a mapping of settings"),
    ("name: [unclosed\n", "not valid YAML"),
    ("tags: [a, b]\n", "tags: expected a mapping"),
    ("name: {a: 1}\n", "name: expected a string"),
])
def test_bad_files_are_rejected_with_the_reason(tmp_path, content, message):
    path = tmp_path / "cluster.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_missing_file_and_bad_tag_flag(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load(None, {"tags": "just-a-word"})


def test_all_problems_are_reported_at_once(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("node_count: x\nbogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert len(caught.value.problems) == 2


@pytest.mark.parametrize("values, expected", [
    ({"region": "us-east-9"}, "region 'us-east-9': not an AWS region; allowed: af-south-1, "),
    ({"region": "useast1"}, "region 'useast1': not an AWS region; allowed: "),
    ({"zones": ["eu-west-1a"]}, "'eu-west-1a': not an availability zone of region us-east-1"),
    ({"zones": ["us-east-1"]}, "not an availability zone"),
    ({"zones": ["us-east-1a", "us-east-1a"]}, "listed more than once"),
    ({"node_count": 0}, "node_count 0: must be at least 1"),
    ({"control_plane_count": 2}, "must be 1, 3 or 5"),
    ({"node_size": "medium"}, "node_size 'medium': not an EC2 instance type"),
    ({"control_plane_size": "t3.huge"}, "control_plane_size 't3.huge'"),
    ({"kubernetes_version": "latest"}, "kubernetes_version 'latest'"),
    ({"kubernetes_version": "1.37.2"}, "kubernetes_version '1.37.2': kops 1.36.2 does not support it yet"),
    ({"kubernetes_version": "1.30.14"}, "kubernetes_version '1.30.14': kops 1.36.2 no longer supports it; "
                                        "allowed: 1.31.0 to 1.36.x"),
    ({"kops_version": "1.32.1"}, "kops_version '1.32.1': not a kops release whose Kubernetes range irisop knows; "
                                 "allowed: 1.36.x"),
    ({"networking": "weave"}, "networking 'weave'"),
    ({"topology": "hybrid"}, "topology 'hybrid'"),
    ({"vpc_cidr": "8.8.0.0/16"}, "must be a private IPv4 range"),
    ({"vpc_cidr": "172.20.0.0/28"}, "must be a private IPv4 range"),
    ({"vpc_cidr": "banana"}, "not a CIDR block"),
    ({"validate_timeout": "soon"}, "validate_timeout"),
    ({"model_repository": "Irisop/Models"}, "not an ECR repository name"),
    ({"model_repository": "irisop/operator"}, "must differ"),
    ({"admin_ami": "debian"}, "expected ami-<hex>"),
    ({"kops_channel": "stable"}, "kops_channel 'stable'"),
    ({"discovery_bucket": "irisop-state-irisop-k8s-local"},
     "discovery_bucket 'irisop-state-irisop-k8s-local': must differ from state_bucket (that bucket must never be "
     "public); allowed: any other bucket name"),
    ({"discovery_bucket": "models", "model_bucket": "models"}, "discovery_bucket 'models': must differ from model_bucket"),
    ({"discovery_bucket": "Bad_Name"}, "discovery_bucket 'Bad_Name'"),
    ({"keep_images": 0}, "keep_images 0"),
    ({"tags": {"aws:owner": "x"}}, "tag 'aws:owner'"),
    ({"name": "Iris_Cluster"}, "must be a lowercase DNS name"),
    ({"name": "iris.k8s.local", "dns_zone": "example.internal"}, "dns_zone 'example.internal': only used with dns: private"),
    ({"dns": "private", "name": "iris.example.com", "dns_zone": "example.internal"}, "must be inside dns_zone"),
    ({"dns": "private", "name": "example.internal", "dns_zone": "example.internal"}, "must be inside dns_zone"),
    ({"dns": "private", "name": "iris.k8s.local"}, "a .k8s.local name cannot live in a Route53 zone"),
    ({"dns": "gossip"}, "dns 'gossip': kops deprecated gossip DNS in 1.29 and refuses new gossip clusters from 1.37; "
                        "allowed: none, private"),
    ({"dns": "public"}, "dns 'public': not a DNS mode this bootstrap creates; allowed: none, private"),
])
def test_each_bad_value_is_named(values, expected):
    found = _problems(**values)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("bucket, ok", [
    ("irisop-state", True),
    ("my.bucket.name", True),
    ("ab", False),
    ("a" * 64, False),
    ("Upper", False),
    ("under_score", False),
    ("-leading", False),
    ("trailing-", False),
    ("two..dots", False),
    ("192.168.5.4", False),
    ("xn--bucket", False),
    ("sthree-bucket", False),
    ("bucket-s3alias", False),
    ("bucket--ol-s3", False),
])
def test_s3_bucket_naming_rules(bucket, ok):
    assert (validate.bucket_name_problems(bucket) == []) is ok


def test_derived_names_follow_the_cluster_name():
    assert ClusterConfig().effective_dns_zone == ""  # dns: none, kops 1.36's default
    cfg = ClusterConfig(name="iris.example.internal", region="us-east-1", dns="private")
    assert cfg.private_dns
    assert cfg.effective_dns_zone == "example.internal"
    assert cfg.effective_state_bucket == "irisop-state-iris-example-internal"
    assert cfg.effective_zones == ["us-east-1a"]
    long = ClusterConfig(name="a" * 60 + ".k8s.local")
    assert validate.bucket_name_problems(long.effective_state_bucket) == []


def test_check_raises_with_every_problem():
    with pytest.raises(ConfigError) as caught:
        validate.check(dataclasses.replace(ClusterConfig(), node_count=0, region="mars-1"))
    assert len(caught.value.problems) >= 2


def test_the_example_configuration_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "cluster.yaml"
    cfg = validate.check(load(example))
    assert cfg.effective_dns_zone == "example.internal" and cfg.control_plane_count == 3


def test_versions_come_from_the_shared_version_file():
    from irisop_deploy import versions

    cfg = ClusterConfig()
    assert cfg.kubernetes_version == versions.kubernetes().lstrip("v") == "1.36.3"
    assert cfg.kops_version == versions.kops().lstrip("v") == "1.36.2"
    assert _problems() == []


@pytest.mark.parametrize("kubernetes, ok", [
    ("1.36.3", True), ("v1.36.0", True), ("1.31.0", True), ("1.35.5", True),
    ("1.37.0", False), ("1.30.99", False), ("2.0.0", False),
])
def test_kops_136_supports_kubernetes_131_to_136(kubernetes, ok):
    found = validate.kubernetes_version_problems(kubernetes, "1.36.2")
    assert (found == []) is ok, found
    # One line, naming both versions.
    assert all("\n" not in p and kubernetes in p and "1.36.2" in p for p in found)


def _load_region(monkeypatch, tmp_path, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load(None, {})


def test_region_follows_the_aws_sdk_order(monkeypatch, tmp_path):
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = eu-central-1\n[profile ml]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    cfg = load(None, {})
    assert (cfg.region, cfg.region_source) == ("eu-central-1", "profile 'default'")
    monkeypatch.setenv("AWS_PROFILE", "ml")
    assert (load(None, {}).region, load(None, {}).region_source) == ("ap-south-1", "profile 'ml'")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert (load(None, {}).region, load(None, {}).region_source) == ("us-west-2", "AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert (load(None, {}).region, load(None, {}).region_source) == ("eu-west-1", "AWS_REGION")
    # An explicit setting wins over all of them, and says so.
    path = tmp_path / "cluster.yaml"
    path.write_text("region: sa-east-1\n")
    assert (load(path).region, load(path).region_source) == ("sa-east-1", str(path))
    assert load(path, {"region": "us-east-2"}).region_source == "--region"


def test_no_region_anywhere_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"^region: not set; set region \(or --region\), AWS_REGION, "):
        load(None, {})


def test_a_region_that_does_not_exist_is_refused_naming_its_source(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "mars-north-9")
    (problem,) = validate.problems(load(None, {}))
    assert problem.startswith("region 'mars-north-9' (from AWS_REGION): not an AWS region; allowed: af-south-1,")
    assert "eu-west-1" in problem and "\n" not in problem


def test_internal_fields_are_not_settings():
    assert "region_source" not in {f.name for f in fields()}
    assert "region_source" not in defaults_yaml()


def test_every_refusal_is_one_line_naming_its_field():
    cfg = ClusterConfig(region="us-east-1", dns="gossip", zones=["eu-west-1a"], node_count=0,
                        kubernetes_version="1.37.0", discovery_bucket="irisop-state-irisop-k8s-local",
                        networking="weave", topology="hybrid")
    found = validate.problems(cfg)
    fields_named = {"dns", "zone", "node_count", "kubernetes_version", "discovery_bucket", "networking", "topology"}
    assert {p.split(" ", 1)[0] for p in found} == fields_named, found
    assert all("\n" not in p for p in found)


def test_config_command_says_where_the_region_came_from(monkeypatch, capsys):
    from irisop_operator.cli import main

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert main(["cluster", "config"]) == 0
    captured = capsys.readouterr()
    assert "# region eu-north-1 from AWS_DEFAULT_REGION" in captured.err
    assert "region: eu-north-1" in captured.out and "region_source" not in captured.out
