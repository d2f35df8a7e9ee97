//! The EC2 driver through the real `aws-sdk-ec2` against moto's EC2 server on loopback (started
//! here): on-demand and spot launches with tags and user data, the fleet rebuilt from tags by a
//! second driver (a restarted gateway), other fleets ignored, termination.

use std::process::{Command, Stdio};

use crate::util::*;
use mark_gateway::cloud::ec2::{Ec2Cloud, Ec2Options};
use mark_gateway::control::catalog::Catalog;
use mark_policies::types::Market;

fn opts(endpoint: &str, fleet: &str) -> Ec2Options {
    Ec2Options {
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        credentials: Some(("testing".into(), "testing".into())),
        image_id: "ami-0abcdef1234567890".into(),
        fleet: fleet.into(),
        model: "resnet18".into(),
        worker_port: 8000,
        max_attempts: 1,
        page_size: 5,
        launch_template: None,
        subnets: Vec::new(),
        addr_from_tag: false,
        worker_repo: None,
        template_user_data: false,
    }
}

#[tokio::test]
async fn ec2_driver_against_moto() {
    let (_moto, endpoint) = start_moto();
    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let cloud = Ec2Cloud::connect(opts(&endpoint, "prod"), catalog.clone()).await;
    let a = cloud.launch("c7i.large", Market::OnDemand).await.unwrap();
    let b = cloud.launch("g4dn.xlarge", Market::Spot).await.unwrap();
    let _t3 = cloud.launch("t3.medium", Market::OnDemand).await.unwrap();
    assert!(a.id.starts_with("i-") && a.addr.ends_with(":8000"), "{a:?}");
    assert!(
        cloud.launch("x9.huge", Market::Spot).await.is_err(),
        "types outside the catalog are refused"
    );
    // another fleet in the same account is not ours
    let other = Ec2Cloud::connect(opts(&endpoint, "staging"), catalog.clone()).await;
    other.launch("c5.large", Market::OnDemand).await.unwrap();

    // a second driver (a restarted gateway) rebuilds the fleet from the tags alone
    let restarted = Ec2Cloud::connect(opts(&endpoint, "prod"), catalog.clone()).await;
    let fleet = restarted.list().await.unwrap();
    assert_eq!(fleet.len(), 3, "{fleet:?}");
    let spot = fleet.iter().find(|i| i.id == b.id).unwrap();
    assert_eq!(spot.market, Market::Spot);
    assert_eq!(spot.instance_type, "g4dn.xlarge");
    assert_eq!(spot.model, "resnet18");
    assert!((spot.price_per_hour - 0.2104).abs() < 1e-9);
    assert!(
        (spot.launched_at - b.launched_at).abs() < 2.0,
        "launch time comes back from EC2's LaunchTime: {} vs {}",
        spot.launched_at,
        b.launched_at
    );
    assert_eq!(other.list().await.unwrap().len(), 1);

    restarted.terminate(&a.id).await.unwrap();
    let ids: Vec<String> = restarted
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&a.id));
    assert!(
        restarted.interrupted().await.unwrap().is_empty(),
        "a terminated on-demand instance is not a spot interruption"
    );
    println!("moto EC2: launched 3 (on-demand, spot, burstable), adopted by tags, terminated 1");
}

#[tokio::test]
async fn a_fleet_larger_than_a_page_is_listed_whole_and_only_its_model() {
    let (_moto, endpoint) = start_moto();
    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let cloud = Ec2Cloud::connect(opts(&endpoint, "big"), catalog.clone()).await;
    for _ in 0..12 {
        cloud.launch("c5.large", Market::OnDemand).await.unwrap();
    }
    // the same fleet name serving another model is another deployment's
    let mut other = opts(&endpoint, "big");
    other.model = "mlp".into();
    let other = Ec2Cloud::connect(other, catalog).await;
    other.launch("c5.large", Market::OnDemand).await.unwrap();
    let fleet = cloud.list().await.unwrap();
    assert_eq!(fleet.len(), 12, "three pages of 5 make one fleet of 12");
    assert!(fleet.iter().all(|i| i.model == "resnet18"));
    assert_eq!(other.list().await.unwrap().len(), 1);
    println!("moto EC2: 12 instances listed over pages of 5; another model's 1 kept apart");
}

/// moto in-process with the side endpoint of `tests/moto_spot.py`; returns (process, EC2
/// endpoint, interrupt endpoint).
fn start_moto_with_spot_reclaim() -> (Moto, String, String) {
    // two probes in a row can return the same port: draw until they differ
    let port = free_port();
    let side = std::iter::repeat_with(free_port)
        .find(|p| *p != port)
        .expect("a second port");
    let py = root().join(".mark/venv/bin/python");
    assert!(py.is_file(), "venv missing: run scripts/setup.sh");
    let child = Command::new(py)
        .arg(root().join("tests/moto_spot.py"))
        .args([port.to_string(), side.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto(child);
    for p in [port, side] {
        wait_for_port(p, || "moto_spot.py did not start".into());
    }
    (
        moto,
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{side}"),
    )
}

#[tokio::test]
async fn spot_interruption_staged_in_moto_is_noticed() {
    let (_moto, endpoint, side) = start_moto_with_spot_reclaim();
    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let cloud = Ec2Cloud::connect(opts(&endpoint, "prod"), catalog).await;
    let spot: Vec<_> = launch_spot(&cloud, 5).await;
    let od = cloud.launch("c7i.large", Market::OnDemand).await.unwrap();
    // AWS reclaims 4 of the 5 spot instances (80%)
    for i in spot.iter().take(4) {
        let r = send(
            "POST",
            &format!("{side}/interrupt/us-east-1/{i}"),
            &[],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let mut gone = cloud.interrupted().await.unwrap();
    gone.sort();
    let mut want: Vec<String> = spot.iter().take(4).cloned().collect();
    want.sort();
    assert_eq!(gone, want, "exactly the reclaimed instances are reported");
    let left: Vec<String> = cloud
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&od.id) && left.contains(&spot[4]));
    println!("moto EC2: 4 of 5 spot instances reclaimed (Server.SpotInstanceTermination), all 4 noticed, fleet down to 2");
}

async fn launch_spot(cloud: &Ec2Cloud, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(cloud.launch("c5.large", Market::Spot).await.unwrap().id);
    }
    ids
}

/// An EC2 client on moto at `endpoint`, and subnets of a new VPC `cidr` (a /16), one per
/// `(subnet cidr, zone)`.
async fn vpc_with_subnets(
    endpoint: &str,
    cidr: &str,
    subnets: &[(&str, &str)],
) -> (aws_sdk_ec2::Client, Vec<String>) {
    let creds = ("testing".to_string(), "testing".to_string());
    let conf =
        mark_gateway::aws_sdk::sdk_config("us-east-1", Some(endpoint), Some(&creds), 1).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let vpc = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let mut ids = Vec::new();
    for (sub, az) in subnets {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(*sub)
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
        ids.push(s.subnet().and_then(|s| s.subnet_id()).unwrap().to_string());
    }
    (ec2, ids)
}

#[tokio::test]
async fn launches_from_a_launch_template_into_the_given_subnet() {
    use aws_sdk_ec2::types::{
        LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
        RequestLaunchTemplateData,
    };
    let (_moto, endpoint) = start_moto();
    let (ec2, subnets) =
        vpc_with_subnets(&endpoint, "10.9.0.0/16", &[("10.9.1.0/24", "us-east-1b")]).await;
    let subnet = subnets[0].clone();
    // the template names the AMI and requires IMDSv2 (session tokens), as docs/operations.md asks
    ec2.create_launch_template()
        .launch_template_name("mark-workers")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-0abcdef1234567890")
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(LaunchTemplateHttpTokensState::Required)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let mut o = opts(&endpoint, "templated");
    o.image_id = String::new();
    o.launch_template = Some("mark-workers".into());
    o.subnets = vec![subnet.clone()];
    let cloud = Ec2Cloud::connect(o, catalog).await;
    let i = cloud
        .launch_keyed("c5.large", Market::Spot, Some("g1-c5.large-spot-0"))
        .await
        .unwrap();
    let d = ec2
        .describe_instances()
        .instance_ids(&i.id)
        .send()
        .await
        .unwrap();
    let inst = &d.reservations()[0].instances()[0];
    assert_eq!(
        inst.image_id(),
        Some("ami-0abcdef1234567890"),
        "the AMI comes from the template"
    );
    assert_eq!(inst.subnet_id(), Some(subnet.as_str()));
    assert_eq!(cloud.list().await.unwrap().len(), 1);
    println!("moto EC2: launched from launch template mark-workers into {subnet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_out_of_capacity_is_skipped_for_the_next_one() {
    // moto never runs out of capacity: a proxy in front of it answers RunInstances into the
    // first subnet as EC2 does when a zone has none of the type (InsufficientInstanceCapacity,
    // HTTP 500), and forwards the rest; the driver tries the next subnet within the same call
    let (_moto, endpoint) = start_moto();
    let (ec2, subnets) = vpc_with_subnets(
        &endpoint,
        "10.8.0.0/16",
        &[("10.8.1.0/24", "us-east-1a"), ("10.8.2.0/24", "us-east-1b")],
    )
    .await;
    let full = subnets[0].clone();
    let rule: crate::util::throttle::Rule = std::sync::Arc::new(move |_, body| {
        let form = String::from_utf8_lossy(body);
        (form.contains("Action=RunInstances") && form.contains(&format!("SubnetId={full}"))).then(
            || {
                (
                    500,
                    "text/xml",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
                     <Code>InsufficientInstanceCapacity</Code><Message>We currently do not have \
                     sufficient c5.large capacity in the Availability Zone you requested \
                     (us-east-1a).</Message></Error></Errors><RequestID>r1</RequestID></Response>"
                        .to_string(),
                )
            },
        )
    });
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = crate::util::throttle::fault_proxy(&endpoint, on, rule).await;
    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let mut o = opts(&proxy.url, "zones");
    o.subnets = subnets.clone();
    let cloud = Ec2Cloud::connect(o, catalog).await;
    // a key whose spread starts at the full subnet
    let key = (0..50)
        .map(|k| format!("g{k}-c5.large-on-demand-0"))
        .find(|k| k.bytes().map(usize::from).sum::<usize>() % 2 == 0)
        .unwrap();
    let i = cloud
        .launch_keyed("c5.large", Market::OnDemand, Some(&key))
        .await
        .expect("launched in the next subnet");
    let d = ec2
        .describe_instances()
        .instance_ids(&i.id)
        .send()
        .await
        .unwrap();
    let inst = &d.reservations()[0].instances()[0];
    assert_eq!(inst.subnet_id(), Some(subnets[1].as_str()));
    assert_eq!(proxy.refused(), 1, "the full subnet was tried first, once");
    println!(
        "RunInstances into {} refused (InsufficientInstanceCapacity); launched {} into {}",
        subnets[0], i.id, subnets[1]
    );
}

#[tokio::test]
async fn spot_prices_are_read_in_the_subnets_zones_and_an_instance_knows_its_zone() {
    use mark_gateway::cloud::spot_prices;
    let (_moto, endpoint) = start_moto();
    let (ec2, subnets) = vpc_with_subnets(
        &endpoint,
        "10.7.0.0/16",
        &[
            ("10.7.1.0/24", "us-east-1d"),
            ("10.7.2.0/24", "us-east-1c"),
            ("10.7.3.0/24", "us-east-1d"),
        ],
    )
    .await;
    // a subnet given twice is one subnet (DescribeSubnets refuses repeated ids)
    let mut given = subnets.clone();
    given.push(subnets[0].clone());
    let zones = spot_prices::subnet_zones(&ec2, &given).await.unwrap();
    assert_eq!(
        zones,
        ["us-east-1d", "us-east-1c", "us-east-1d"],
        "a zone per distinct subnet, in order"
    );
    let unknown = spot_prices::subnet_zones(&ec2, &["subnet-0000dead".to_string()]).await;
    assert!(
        unknown.is_err(),
        "an unknown subnet is an error: {unknown:?}"
    );

    let types = ["c5.large".to_string()];
    let everywhere = spot_prices::read(&ec2, &types, &[]).await.unwrap();
    assert!(
        everywhere["c5.large"].contains_key("us-east-1a"),
        "with no subnets every zone is read: {everywhere:?}"
    );
    let ours = spot_prices::read(&ec2, &types, &zones).await.unwrap();
    let read: Vec<&String> = ours["c5.large"].keys().collect();
    assert_eq!(
        read,
        ["us-east-1c", "us-east-1d"],
        "only the subnets' zones"
    );
    // moto quotes one price everywhere: the plan's mean is that price, over our zones only
    assert_eq!(
        spot_prices::planned(&ours, &zones)["c5.large"],
        (0.00001, "us-east-1c+us-east-1d".to_string())
    );

    let catalog = Catalog::load(&root().join("examples/catalog-us-east-1.toml")).unwrap();
    let mut o = opts(&endpoint, "zoned");
    o.subnets = vec![subnets[0].clone()];
    let cloud = Ec2Cloud::connect(o, catalog).await;
    let launched = cloud.launch("c5.large", Market::Spot).await.unwrap();
    assert_eq!(launched.zone, "us-east-1d");
    let listed = cloud.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].zone, "us-east-1d",
        "the zone comes back from EC2's placement"
    );
    println!("moto EC2: spot prices read in {zones:?}; the instance placed in us-east-1d");
}
