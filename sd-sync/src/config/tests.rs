use super::*;

const KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "id"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
];

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(KEYS.iter().chain(pairs).copied()).unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
    match parse(args.iter().map(|a| a.to_string()), &settings(env))? {
        Command::Run(config) => Ok(*config),
        Command::Help => panic!("unexpected help"),
    }
}

#[test]
fn defaults_apply_to_a_single_mapping() {
    let config = run(
        &["--mapping", "s3://b/active=/t/eu"],
        &[("AWS_REGION", "eu-west-1")],
    )
    .unwrap();
    assert_eq!(config.mappings.len(), 1);
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.interval, Duration::from_secs(2));
    assert_eq!(config.stale_after, Duration::from_secs(300));
    assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(config.valve, ValveConfig::default());
    assert_eq!(config.fetch_concurrency, 64);
    assert_eq!(config.safety_listing_interval, Duration::from_secs(600));
    assert!(!config.once);
    assert!(
        !format!("{config:?}").contains("secret\""),
        "secrets are redacted"
    );
}

#[test]
fn every_flag_has_an_environment_form_and_the_flag_wins() {
    let env = [
        ("SD_SYNC_MAPPINGS", "s3://b/a=/t/one,\n s3://b/b=/t/two"),
        ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("SD_SYNC_INTERVAL", "500ms"),
        ("SD_SYNC_LISTEN", "127.0.0.1:0"),
        ("SD_SYNC_STALE_AFTER", "1m"),
        ("SD_SYNC_MAX_DELETION_SHARE", "25%"),
        ("SD_SYNC_MAX_DELETIONS", "3"),
        ("SD_SYNC_DELETION_CONFIRMATIONS", "4"),
        ("SD_SYNC_ALLOW_MASS_DELETION", "true"),
        ("SD_SYNC_FETCH_CONCURRENCY", "8"),
        ("SD_SYNC_SAFETY_LISTING_INTERVAL", "90s"),
        ("SD_SYNC_ONCE", "yes"),
    ];
    let config = run(&[], &env).unwrap();
    assert_eq!(config.mappings.len(), 2);
    assert_eq!(config.mappings[1].name, "two");
    assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(config.region, "us-east-1");
    assert_eq!(config.interval, Duration::from_millis(500));
    assert_eq!(config.listen.port(), 0);
    assert_eq!(config.stale_after, Duration::from_secs(60));
    assert_eq!(
        config.valve,
        ValveConfig {
            max_share_percent: 25,
            max_count: 3,
            confirmations: 4,
            allow_mass_deletion: true
        }
    );
    assert_eq!(config.fetch_concurrency, 8);
    assert_eq!(config.safety_listing_interval, Duration::from_secs(90));
    assert!(config.once);

    let config = run(
        &[
            "--mapping=s3://c/x=/t/three",
            "--interval",
            "3s",
            "--listen",
            "127.0.0.1:1234",
        ],
        &env,
    )
    .unwrap();
    assert_eq!(
        config.mappings.len(),
        1,
        "--mapping replaces SD_SYNC_MAPPINGS"
    );
    assert_eq!(config.interval, Duration::from_secs(3));
    assert_eq!(config.listen.port(), 1234);
}

#[test]
fn port_alone_listens_on_every_interface() {
    let config = run(
        &["--mapping", "s3://b/a=/t/x", "--s3-endpoint", "http://x"],
        &[("PORT", "8081"), ("SD_SYNC_AUTH_TOKEN", "t")],
    )
    .unwrap();
    assert_eq!(config.listen, "0.0.0.0:8081".parse().unwrap());
}

#[test]
fn authentication_is_optional_on_loopback_and_required_beyond() {
    let m = ["--mapping", "s3://b/a=/t/x", "--region", "r"];
    let config = run(&m, &[]).unwrap();
    assert!(!config.auth.is_enabled());
    for listen in ["0.0.0.0:9280", "10.0.0.5:9280", "[::]:9280"] {
        let args = [&m[..], &["--listen", listen]].concat();
        let err = run(&args, &[]).unwrap_err();
        assert!(
            err.starts_with("SD_SYNC_AUTH_TOKEN") && err.contains("beyond loopback"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let once = [&args[..], &["--once"]].concat();
        assert!(run(&once, &[]).is_ok(), "--once does not listen");
        let with_token = run(&args, &[("SD_SYNC_AUTH_TOKEN", "t0ken")]).unwrap();
        assert_eq!(
            with_token.auth.bearer.as_ref().map(Secret::expose),
            Some("t0ken")
        );
        assert!(!format!("{with_token:?}").contains("t0ken"), "redacted");
    }
}

#[test]
fn secrets_come_from_the_environment_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let file = file.to_str().unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, " \n").unwrap();
    let blank = blank.to_str().unwrap();
    let m = ["--mapping", "s3://b/a=/t/x", "--region", "r"];
    let args = [
        &m[..],
        &[
            "--auth-username",
            "prometheus",
            "--auth-password-file",
            file,
        ],
    ]
    .concat();
    let config = run(&args, &[]).unwrap();
    let (user, password) = config.auth.basic.unwrap();
    assert_eq!((user.as_str(), password.expose()), ("prometheus", "s3cret"));
    let config = run(
        &m,
        &[
            ("SD_SYNC_AUTH_USERNAME", "prometheus"),
            ("SD_SYNC_AUTH_PASSWORD", "pw"),
            ("SD_SYNC_AUTH_TOKEN_FILE", file),
        ],
    )
    .unwrap();
    assert_eq!(config.auth.basic.unwrap().1.expose(), "pw");
    assert_eq!(config.auth.bearer.unwrap().expose(), "s3cret");

    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--auth-username", "u"],
            &[],
            "basic auth needs a password",
        ),
        (
            &[],
            &[("SD_SYNC_AUTH_PASSWORD", "p")],
            "basic auth needs a username",
        ),
        (
            &["--auth-username", "a:b"],
            &[("SD_SYNC_AUTH_PASSWORD", "p")],
            "has no ':'",
        ),
        (
            &["--auth-token-file", file],
            &[("SD_SYNC_AUTH_TOKEN", "t")],
            "give one, not both",
        ),
        (
            &["--auth-token-file", "/nonexistent/token"],
            &[],
            "--auth-token-file (SD_SYNC_AUTH_TOKEN_FILE): cannot read /nonexistent/token",
        ),
        (
            &["--auth-token-file", blank],
            &[],
            "--auth-token-file (SD_SYNC_AUTH_TOKEN_FILE): the secret is empty",
        ),
    ];
    for (extra, env, expected) in cases {
        let args = [&m[..], extra].concat();
        let err = run(&args, env).unwrap_err();
        assert!(err.contains(expected), "{extra:?} {env:?}: {err}");
        assert!(!err.contains("s3cret") && !err.contains('\n'), "{err}");
    }
}

#[test]
fn bad_flags_and_settings_are_one_clear_line() {
    let m = "s3://b/a=/t/x";
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[], "at least one mapping"),
        (&["--mapping", "nope"], &[], "does not start with s3://"),
        (
            &["--mapping", m, "--frobnicate"],
            &[],
            "unknown argument \"--frobnicate\"",
        ),
        (&["--mapping"], &[], "a value is required for '--mapping"),
        (&["--mapping", m], &[], "--region (AWS_REGION)"),
        (
            &["--mapping", m, "--region", "r", "--interval", "2"],
            &[],
            "--interval (SD_SYNC_INTERVAL): \"2\" is not a duration",
        ),
        (
            &["--mapping", m, "--region", "r", "--interval", "0s"],
            &[],
            "outside 10ms",
        ),
        (
            &["--mapping", m, "--region", "r", "--stale-after", "1s"],
            &[],
            "shorter than the poll interval",
        ),
        (
            &["--mapping", m, "--region", "r", "--listen", "localhost"],
            &[],
            "is not ADDR:PORT",
        ),
        (
            &[
                "--mapping",
                m,
                "--region",
                "r",
                "--max-deletion-share",
                "150",
            ],
            &[],
            "in 0..=100",
        ),
        (
            &[
                "--mapping",
                m,
                "--region",
                "r",
                "--deletion-confirmations",
                "0",
            ],
            &[],
            "in 1..=100000",
        ),
        (
            &["--mapping", m, "--region", "r", "--once=yes"],
            &[],
            "unexpected value 'yes' for '--once'",
        ),
        (
            &["--mapping", m, "--region", "r"],
            &[("SD_SYNC_ALLOW_MASS_DELETION", "maybe")],
            "SD_SYNC_ALLOW_MASS_DELETION",
        ),
        (
            &["--mapping", m, "--s3-endpoint", "127.0.0.1:9000"],
            &[],
            "not an http://",
        ),
        (
            &["--mapping", m, "--mapping", "s3://c/=/t/x"],
            &[("AWS_REGION", "r")],
            "the same directory",
        ),
        (
            &["--mapping", m, "--mapping", "s3://c/=/u/x"],
            &[("AWS_REGION", "r")],
            "same last component",
        ),
    ];
    for (args, env, expected) in cases {
        let err = run(args, env).unwrap_err();
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn static_keys_are_optional_whole_and_may_come_from_vcap_services() {
    let args = [
        "--mapping".to_string(),
        "s3://b/a=/t/x".into(),
        "--region".into(),
        "r".into(),
    ];
    let none = Settings::from_pairs::<&str, &str>([]).unwrap();
    let Command::Run(config) = parse(args.clone(), &none).unwrap() else {
        panic!("expected a run")
    };
    assert_eq!(config.access_key_id, None, "the default credential chain");
    let half = Settings::from_pairs([("AWS_ACCESS_KEY_ID", "A")]).unwrap();
    let err = parse(args.clone(), &half).unwrap_err();
    assert!(err.contains("give both static keys or neither"), "{err}");
    let vcap = r#"{"user-provided": [{"credentials": {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S"}}]}"#;
    let from_vcap = Settings::from_pairs([("VCAP_SERVICES", vcap)]).unwrap();
    let Command::Run(config) = parse(args, &from_vcap).unwrap() else {
        panic!("expected a run")
    };
    assert_eq!(config.access_key_id.as_deref(), Some("A"));
}

#[test]
fn a_flag_given_twice_takes_its_last_value() {
    let config = run(
        &[
            "--mapping",
            "s3://b/a=/t/x",
            "--region",
            "a",
            "--region",
            "b",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(config.region, "b");
}

#[test]
fn help_is_a_command_generated_from_the_flags() {
    for flag in ["--help", "-h"] {
        let parsed = parse([flag.to_string()], &settings(&[])).unwrap();
        assert!(matches!(parsed, Command::Help));
    }
    let help = help();
    for arg in Flags::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        assert!(help.contains(&format!("--{long}")), "{long}: {help}");
        if let Some(env) = arg.get_env() {
            assert!(help.contains(&*env.to_string_lossy()), "{long}: {help}");
        }
    }
    for name in [
        "AWS_ACCESS_KEY_ID",
        "SD_SYNC_AUTH_TOKEN",
        "SD_SYNC_AUTH_PASSWORD",
    ] {
        assert!(help.contains(name), "{name}");
    }
}

#[test]
fn the_scrape_gateway_is_off_unless_its_listener_is_given() {
    let config = run(&["--mapping", "s3://b/a=/t/eu", "--region", "r"], &[]).unwrap();
    assert!(config.gateway.is_none());
    let err = run(
        &["--mapping", "s3://b/a=/t/eu", "--region", "r"],
        &[("SD_SYNC_SCRAPE_ROUTER", "10.0.0.9:443")],
    )
    .unwrap_err();
    assert!(
        err.starts_with("--scrape-listen (SD_SYNC_SCRAPE_LISTEN): "),
        "{err}"
    );
}

#[test]
fn the_scrape_gateway_has_defaults_and_an_environment_form_for_every_flag() {
    let base = ["--mapping", "s3://b/a=/t/eu", "--region", "r"];
    let config = run(
        &[&base[..], &["--scrape-listen", "127.0.0.1:8080"]].concat(),
        &[],
    )
    .unwrap();
    let gateway = config.gateway.unwrap();
    assert_eq!(gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        gateway.routers,
        [MappingRouter {
            mapping: "eu".into(),
            pin: None
        }]
    );
    assert!(gateway.allow_cidrs.is_empty());
    assert_eq!(gateway.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(gateway.upstream_port, 443);
    assert_eq!(gateway.default_timeout, Duration::from_secs(10));
    assert_eq!(gateway.connect_timeout, Duration::from_secs(5));
    assert_eq!(gateway.pool_max_idle, 64);
    assert_eq!(gateway.pool_idle_timeout, Duration::from_secs(60));
    assert_eq!(gateway.client_idle_timeout, Duration::from_secs(15));
    assert!(!gateway.insecure_skip_verify);

    let env = [
        ("SD_SYNC_SCRAPE_LISTEN", "127.0.0.1:0"),
        ("SD_SYNC_SCRAPE_ALLOW_CIDR", "10.0.0.0/16, 2001:db8::/32"),
        ("SD_SYNC_SCRAPE_CA_FILE", "/etc/ssl/platform.pem"),
        ("SD_SYNC_SCRAPE_INSECURE_SKIP_VERIFY", "true"),
        ("SD_SYNC_SCRAPE_MAX_BODY_BYTES", "1048576"),
        ("SD_SYNC_SCRAPE_UPSTREAM_PORT", "8443"),
        ("SD_SYNC_SCRAPE_TIMEOUT", "15s"),
        ("SD_SYNC_SCRAPE_CONNECT_TIMEOUT", "1s"),
        ("SD_SYNC_SCRAPE_POOL_MAX_IDLE", "0"),
        ("SD_SYNC_SCRAPE_POOL_IDLE_TIMEOUT", "5s"),
        ("SD_SYNC_SCRAPE_CLIENT_IDLE_TIMEOUT", "2m"),
    ];
    let gateway = run(&base, &env).unwrap().gateway.unwrap();
    assert_eq!(gateway.allow_cidrs.len(), 2);
    assert_eq!(
        gateway.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ssl/platform.pem"))
    );
    assert!(gateway.insecure_skip_verify);
    assert_eq!(gateway.max_body_bytes, 1_048_576);
    assert_eq!(gateway.upstream_port, 8443);
    assert_eq!(gateway.default_timeout, Duration::from_secs(15));
    assert_eq!(gateway.connect_timeout, Duration::from_secs(1));
    assert_eq!(gateway.pool_max_idle, 0);
    assert_eq!(gateway.pool_idle_timeout, Duration::from_secs(5));
    assert_eq!(gateway.client_idle_timeout, Duration::from_secs(120));

    let gateway = run(
        &[
            &base[..],
            &[
                "--scrape-listen",
                "[::1]:8080",
                "--scrape-router",
                "gorouter.internal:443",
            ],
        ]
        .concat(),
        &[],
    )
    .unwrap()
    .gateway
    .unwrap();
    assert_eq!(
        gateway.routers[0].pin,
        Some(crate::gateway::Pin::Name("gorouter.internal".into(), 443))
    );
}

#[test]
fn each_mapping_may_be_pinned_to_its_own_router_with_a_default_for_the_rest() {
    let mappings = [
        "--mapping",
        "s3://ireland/active=/t/eu-west-1-targets",
        "--mapping",
        "s3://london/active?region=eu-west-2=/t/eu-west-2-targets",
        "--mapping",
        "s3://paris/active?region=eu-west-3=/t/eu-west-3-targets",
        "--region",
        "eu-west-1",
        "--scrape-listen",
        "127.0.0.1:8080",
    ];
    let pins = |args: &[&str], env: &[(&str, &str)]| -> Vec<Option<String>> {
        run(&[&mappings[..], args].concat(), env)
            .unwrap()
            .gateway
            .unwrap()
            .routers
            .iter()
            .map(|r| r.pin.as_ref().map(ToString::to_string))
            .collect()
    };
    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        pins(
            &[
                "--scrape-router",
                "eu-west-2-targets=10.2.0.9:443",
                "--scrape-router",
                "eu-west-1-targets=gorouter.ireland.internal:443",
            ],
            &[]
        ),
        [
            some("gorouter.ireland.internal:443"),
            some("10.2.0.9:443"),
            None
        ]
    );
    // The environment form is a comma-separated list, with a default for the rest.
    assert_eq!(
        pins(
            &[],
            &[(
                "SD_SYNC_SCRAPE_ROUTER",
                "eu-west-2-targets=10.2.0.9:443, 10.0.0.9:443"
            )]
        ),
        [
            some("10.0.0.9:443"),
            some("10.2.0.9:443"),
            some("10.0.0.9:443")
        ]
    );
    // Some mappings pinned, others not: the CIDRs restrict those that are not.
    let gateway = run(
        &[
            &mappings[..],
            &[
                "--scrape-router",
                "eu-west-1-targets=10.1.0.9:443",
                "--scrape-allow-cidr",
                "10.3.0.0/16",
            ],
        ]
        .concat(),
        &[],
    )
    .unwrap()
    .gateway
    .unwrap();
    assert_eq!(gateway.allow_cidrs, ["10.3.0.0/16".parse().unwrap()]);
    assert_eq!(gateway.routers[2].pin, None);

    // Unknown mappings, two defaults, two pins for one mapping, CIDRs restricting nothing.
    for (args, expected) in [
        (
            &["--scrape-router", "eu-west-9-targets=10.0.0.9:443"][..],
            "--scrape-router (SD_SYNC_SCRAPE_ROUTER): \"eu-west-9-targets\" is not a mapping's \
             name (the mappings: eu-west-1-targets, eu-west-2-targets, eu-west-3-targets)",
        ),
        (
            &[
                "--scrape-router",
                "10.0.0.9:443",
                "--scrape-router",
                "10.0.0.8:443",
            ],
            "--scrape-router (SD_SYNC_SCRAPE_ROUTER): two routers without MAPPING=",
        ),
        (
            &[
                "--scrape-router",
                "eu-west-1-targets=10.0.0.9:443",
                "--scrape-router",
                "eu-west-1-targets=10.0.0.8:443",
            ],
            "--scrape-router (SD_SYNC_SCRAPE_ROUTER): two routers for the mapping \
             \"eu-west-1-targets\"",
        ),
        (
            &["--scrape-router", "eu-west-1-targets=gorouter"],
            "--scrape-router (SD_SYNC_SCRAPE_ROUTER): \"eu-west-1-targets=gorouter\": ",
        ),
        (
            &[
                "--scrape-router",
                "eu-west-1-targets=10.1.0.9:443",
                "--scrape-router",
                "10.0.0.9:443",
                "--scrape-allow-cidr",
                "10.0.0.0/8",
            ],
            "--scrape-allow-cidr (SD_SYNC_SCRAPE_ALLOW_CIDR): every mapping has a \
             --scrape-router",
        ),
    ] {
        let err = run(&[&mappings[..], args].concat(), &[]).unwrap_err();
        assert!(err.starts_with(expected), "{args:?}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let err = run(
        &mappings,
        &[("SD_SYNC_SCRAPE_ROUTER", "10.0.0.9:443,\n10.0.0.8:443")],
    )
    .unwrap_err();
    assert!(
        err.starts_with("--scrape-router (SD_SYNC_SCRAPE_ROUTER): two routers without"),
        "{err}"
    );
}

#[test]
fn bad_scrape_gateway_settings_stop_sd_sync_with_one_line_naming_the_flag() {
    let base = ["--mapping", "s3://b/a=/t/eu", "--region", "r"];
    let cases: [(&[&str], &str); 7] = [
        (
            &["--scrape-listen", "0.0.0.0:8080"],
            "--scrape-listen (SD_SYNC_SCRAPE_LISTEN): ",
        ),
        (
            &["--scrape-listen", "8080"],
            "--scrape-listen (SD_SYNC_SCRAPE_LISTEN): ",
        ),
        (
            &[
                "--scrape-listen",
                "127.0.0.1:8080",
                "--scrape-router",
                "gorouter",
            ],
            "--scrape-router (SD_SYNC_SCRAPE_ROUTER): ",
        ),
        (
            &[
                "--scrape-listen",
                "127.0.0.1:8080",
                "--scrape-allow-cidr",
                "10.0.0.0",
            ],
            "--scrape-allow-cidr (SD_SYNC_SCRAPE_ALLOW_CIDR): ",
        ),
        (
            &[
                "--scrape-listen",
                "127.0.0.1:8080",
                "--scrape-router",
                "10.0.0.9:443",
                "--scrape-allow-cidr",
                "10.0.0.0/8",
            ],
            "--scrape-allow-cidr (SD_SYNC_SCRAPE_ALLOW_CIDR): ",
        ),
        (
            &[
                "--scrape-listen",
                "127.0.0.1:8080",
                "--scrape-upstream-port",
                "0",
            ],
            "--scrape-upstream-port (SD_SYNC_SCRAPE_UPSTREAM_PORT): ",
        ),
        (
            &[
                "--scrape-listen",
                "127.0.0.1:8080",
                "--scrape-timeout",
                "0s",
            ],
            "--scrape-timeout (SD_SYNC_SCRAPE_TIMEOUT): ",
        ),
    ];
    for (args, expected) in cases {
        let err = run(&[&base[..], args].concat(), &[]).unwrap_err();
        assert!(err.starts_with(expected), "{args:?}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn the_scrape_token_key_comes_from_the_environment_or_a_file_and_is_checked() {
    let args = ["--mapping", "s3://b/active=/t/eu", "--region", "eu-west-1"];
    assert!(run(&args, &[]).unwrap().scrape_token_key.is_none());
    let key = "0123456789abcdef0123456789abcdef";
    let from_env = run(&args, &[("SCRAPE_TOKEN_KEY", key)])
        .unwrap()
        .scrape_token_key
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    let path = path.to_str().unwrap();
    let with_file = [&args[..], &["--scrape-token-key-file", path]].concat();
    let from_file = run(&with_file, &[]).unwrap().scrape_token_key.unwrap();
    assert_eq!(from_env.token_for("b"), from_file.token_for("b"));
    let config = run(&with_file, &[]).unwrap();
    assert!(!format!("{config:?}").contains(key), "the key is redacted");

    let short = run(&args, &[("SCRAPE_TOKEN_KEY", "short-key")]).unwrap_err();
    assert!(
        short.starts_with("SCRAPE_TOKEN_KEY") && short.contains("at least 32"),
        "{short}"
    );
    assert!(!short.contains("short-key"), "{short}");
    let both = run(&with_file, &[("SCRAPE_TOKEN_KEY", key)]).unwrap_err();
    assert!(both.contains("not both"), "{both}");
}

#[test]
fn the_safety_listing_interval_is_zero_or_at_least_the_poll_interval() {
    let mapping = ["--mapping", "s3://b/active/=/t/eu", "--region", "eu-west-1"];
    let with = |value: &str| {
        let mut args = mapping.to_vec();
        args.extend(["--safety-listing-interval", value]);
        run(&args, &[])
    };
    assert_eq!(with("0s").unwrap().safety_listing_interval, Duration::ZERO);
    assert_eq!(
        with("6m").unwrap().safety_listing_interval,
        Duration::from_secs(360)
    );
    let err = with("1s").unwrap_err();
    assert!(
        err.starts_with(
            "--safety-listing-interval (SD_SYNC_SAFETY_LISTING_INTERVAL): 1s is shorter"
        ),
        "{err}"
    );
}
