"""What the catalog tests share: the tiny transformer as an AdModel, and the seller's rules."""

import pytest

from adgen_utils.study.footing import load_ad_model
from adgen_utils.study.selection import AdRules


@pytest.fixture(scope="module")
def tiny_model(tiny_folder):
    return load_ad_model(tiny_folder)


@pytest.fixture(scope="module")
def rules(embedded_ads):
    """The seller's rules, fitted on 3,000 embedded training ads."""
    return AdRules(embedded_ads.loc[embedded_ads["split"] == "train", "ad"].head(3000).tolist())
