"""The provider as a Serverless Application Repository application.

One version everywhere (the package, the SAR metadata, the nested-provider
example, the source URL's tag), and metadata that ``sam publish`` accepts:
its documented patterns and limits are checked here because ``sam validate``
does not check them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from test_template import load_cfn

import sir_membership

ROOT = Path(__file__).parent.parent
NESTED = ROOT / "examples" / "nested-provider.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def sar(template: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = template["Metadata"]["AWS::ServerlessRepo::Application"]
    return metadata


@pytest.fixture(scope="module")
def nested() -> dict[str, Any]:
    return load_cfn(NESTED)


def test_one_version_for_the_package_the_application_and_the_example(
    sar: dict[str, Any], nested: dict[str, Any]
) -> None:
    version = sir_membership.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "sir_membership.__version__"
    }
    assert sar["SemanticVersion"] == version
    assert sar["SourceCodeUrl"].endswith(f"/tree/v{version}")
    location = nested["Resources"]["Provider"]["Properties"]["Location"]
    assert location["SemanticVersion"] == version


def test_the_application_metadata_is_what_sam_publish_accepts(sar: dict[str, Any]) -> None:
    assert set(sar) >= {
        "Name",
        "Description",
        "Author",
        "SpdxLicenseId",
        "LicenseUrl",
        "ReadmeUrl",
        "SemanticVersion",
        "SourceCodeUrl",
        "Labels",
    }
    assert re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", sar["Name"])
    assert re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]", sar["Author"])
    assert len(sar["Author"]) <= 127
    assert 1 <= len(sar["Description"]) <= 256
    assert 1 <= len(sar["Labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in sar["Labels"])
    assert sar["SpdxLicenseId"] == "Apache-2.0"
    assert sar["SourceCodeUrl"].startswith("https://")


def test_the_license_and_readme_it_uploads_exist(sar: dict[str, Any]) -> None:
    license_text = (ROOT / sar["LicenseUrl"]).read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert "APPENDIX: How to apply the Apache License to your work." in license_text
    assert (ROOT / sar["ReadmeUrl"]).read_text().startswith("# sir-membership")


def test_the_nested_example_wires_the_providers_output_and_parameters(
    template: dict[str, Any], nested: dict[str, Any]
) -> None:
    provider = nested["Resources"]["Provider"]
    assert provider["Type"] == "AWS::Serverless::Application"
    assert provider["Properties"]["Location"]["ApplicationId"].endswith(
        ":applications/" + template["Metadata"]["AWS::ServerlessRepo::Application"]["Name"]
    )
    assert set(provider["Properties"]["Parameters"]) <= set(template["Parameters"])
    membership = nested["Resources"]["Membership"]
    assert membership["Type"] == "Custom::SecurityIRMembership"
    token = membership["Properties"]["ServiceToken"]
    assert token == {"Fn::GetAtt": ["Provider", "Outputs.ServiceToken"]}
    assert "ServiceToken" in template["Outputs"]
    assert membership["DeletionPolicy"] == "RetainExceptOnCreate"
    assert membership["UpdateReplacePolicy"] == "Retain"
