//! The IAM policy documents a deployment needs, filled in with what the config names (bucket and
//! prefix, function, table, fleet, region): `mark deploy` prints them; it creates no IAM itself
//! (roles are an account owner's decision, and the deploying identity rarely may).

use serde_json::{json, Value};

/// What the documents are about.
#[derive(Debug, Clone)]
pub struct Names {
    /// Region of the EC2 fleet.
    pub region: String,
    /// Region of the function.
    pub lambda_region: String,
    /// Bucket of the repository (and of the runtime and the function's code).
    pub bucket: String,
    /// Its prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Fleet tag.
    pub fleet: String,
    /// Lambda function name, if any.
    pub function: Option<String>,
    /// Lease table, if any.
    pub table: Option<String>,
    /// Role of the workers' instance profile, or a placeholder.
    pub worker_role: String,
    /// Role the function runs as, if any.
    pub lambda_role: Option<String>,
}

fn objects(n: &Names) -> String {
    if n.prefix.is_empty() {
        format!("arn:aws:s3:::{}/*", n.bucket)
    } else {
        format!("arn:aws:s3:::{}/{}/*", n.bucket, n.prefix)
    }
}

fn doc(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The gateway's role: run, tag, list and terminate its fleet's instances, invoke the function,
/// hold the lease, read the repository.
pub fn gateway(n: &Names) -> Value {
    let mut s = vec![
        json!({ "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": [
            "arn:aws:ec2:*:*:launch-template/*", "arn:aws:ec2:*:*:instance/*",
            "arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:*:*:network-interface/*",
            "arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*:*:volume/*",
            "arn:aws:ec2:*::image/*"] }),
        json!({ "Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": "*",
            "Condition": { "StringEquals": { "ec2:CreateAction": "RunInstances" } } }),
        json!({ "Effect": "Allow", "Action": ["ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"], "Resource": "*" }),
        json!({ "Effect": "Allow", "Action": ["ec2:TerminateInstances"], "Resource": "*",
            "Condition": { "StringEquals": { "aws:ResourceTag/mark:fleet": n.fleet } } }),
        json!({ "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": n.worker_role }),
        json!({ "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects(n) }),
    ];
    if let Some(f) = &n.function {
        s.push(
            json!({ "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
            "Resource": format!("arn:aws:lambda:{}:*:function:{f}", n.lambda_region) }),
        );
    }
    if let Some(t) = &n.table {
        s.push(
            json!({ "Effect": "Allow", "Action": ["dynamodb:DescribeTable",
            "dynamodb:CreateTable", "dynamodb:UpdateTimeToLive", "dynamodb:GetItem",
            "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
            "Resource": format!("arn:aws:dynamodb:*:*:table/{t}") }),
        );
    }
    doc(s)
}

/// The workers' instance role: read the runtime and the repository.
pub fn worker(n: &Names) -> Value {
    doc(vec![
        json!({ "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects(n) }),
    ])
}

/// The function's execution role: read the repository, write its logs.
pub fn lambda(n: &Names) -> Value {
    doc(vec![
        json!({ "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects(n) }),
        json!({ "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
            "logs:PutLogEvents"], "Resource": "*" }),
    ])
}

/// Who runs `mark deploy`: write the runtime and the function's code, create or update the
/// function, the launch template and the table, and pass the two roles.
pub fn deployer(n: &Names) -> Value {
    let mut pass = vec![n.worker_role.clone()];
    pass.extend(n.lambda_role.clone());
    doc(vec![
        json!({ "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": objects(n) }),
        json!({ "Effect": "Allow", "Action": ["s3:ListBucket", "s3:CreateBucket"],
            "Resource": format!("arn:aws:s3:::{}", n.bucket) }),
        json!({ "Effect": "Allow", "Action": ["lambda:GetFunctionConfiguration",
            "lambda:CreateFunction", "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration", "lambda:GetFunctionConcurrency",
            "lambda:PutFunctionConcurrency"], "Resource": "*" }),
        json!({ "Effect": "Allow", "Action": ["ec2:DescribeLaunchTemplateVersions",
            "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion",
            "ec2:ModifyLaunchTemplate"], "Resource": "*" }),
        json!({ "Effect": "Allow", "Action": ["dynamodb:DescribeTable", "dynamodb:CreateTable",
            "dynamodb:UpdateTimeToLive"], "Resource": "*" }),
        json!({ "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": pass }),
    ])
}

/// All four, titled, as `mark deploy` prints them.
pub fn print_all(n: &Names) -> String {
    let mut out = String::new();
    for (title, d) in [
        ("the gateway's role", gateway(n)),
        ("the workers' instance role", worker(n)),
        ("the function's execution role", lambda(n)),
        ("whoever runs `mark deploy`", deployer(n)),
    ] {
        out.push_str(&format!(
            "IAM policy for {title}:\n{}\n",
            serde_json::to_string_pretty(&d).unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_the_deployments_own_resources_only() {
        let n = Names {
            region: "us-east-2".into(),
            lambda_region: "eu-west-1".into(),
            bucket: "models".into(),
            prefix: "prod".into(),
            fleet: "shop".into(),
            function: Some("shop-spill".into()),
            table: Some("shop-lease".into()),
            worker_role: "arn:aws:iam::1:role/w".into(),
            lambda_role: Some("arn:aws:iam::1:role/l".into()),
        };
        let g = gateway(&n).to_string();
        assert!(g.contains(r#""aws:ResourceTag/mark:fleet":"shop""#), "{g}");
        assert!(
            g.contains("arn:aws:lambda:eu-west-1:*:function:shop-spill"),
            "{g}"
        );
        assert!(g.contains("table/shop-lease"), "{g}");
        assert!(g.contains("arn:aws:s3:::models/prod/*"), "{g}");
        let d = deployer(&n).to_string();
        assert!(d.contains("role/w") && d.contains("role/l"), "{d}");
        let all = print_all(&n);
        assert_eq!(all.matches("IAM policy for").count(), 4);
    }
}
