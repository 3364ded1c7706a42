//! AWS regions stackpilot knows. An unknown region would otherwise surface
//! as a DNS failure retried forever; a region newer than this list can be
//! allowed explicitly in the AwsAccount's `allowedRegions`.

const KNOWN: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// Ok when the region is known, or explicitly allowed by the account.
pub fn check(region: &str, explicitly_allowed: &[String]) -> Result<(), String> {
    if KNOWN.contains(&region) || explicitly_allowed.iter().any(|r| r == region) {
        return Ok(());
    }
    Err(format!(
        "{region} is not an AWS region stackpilot knows; spec.region cannot be changed, so recreate the Stack with a known region, or, if it is a new region, list it in the allowedRegions of the Stack's AwsAccount"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_explicitly_allowed_regions_pass() {
        assert!(check("eu-west-1", &[]).is_ok());
        assert!(check("xx-mars-1", &[]).unwrap_err().contains("xx-mars-1"));
        assert!(check("xx-mars-1", &["xx-mars-1".into()]).is_ok());
    }
}
