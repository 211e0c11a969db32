//! The reference product on the real web-ha topology: uploads through the load balancer are
//! durable and analysed, sessions follow SECRET_KEY, the historian and the analysis results
//! hold their uniqueness promises against the real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use hadrill::Run;
use hadrill_sut::config::{DatabaseConfig, SslMode};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn url(run: &Run, node: &str, port: u16, path: &str) -> String {
    let addr = run.node(node).unwrap().host_addr(port).unwrap();
    format!("http://{addr}{path}")
}

fn served_by(r: &reqwest::Response) -> String {
    r.headers()["x-served-by"].to_str().unwrap().to_string()
}

/// Pseudo-random bytes (xorshift), distinct per seed, with some newlines.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn login(http: &reqwest::Client, base: &str, user: &str) -> reqwest::Response {
    let r = http
        .post(format!("{base}/login"))
        .json(&serde_json::json!({ "user": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_through_the_lb_read_back_identical_and_get_analysed() {
    let mut run = common::start("web-ha").await;
    let lb = url(&run, "lb", 80, "");
    let http = client();

    let anonymous = reqwest::get(format!("{lb}/me")).await.unwrap();
    assert_eq!(anonymous.status(), 401, "no session must mean 401");
    login(&http, &lb, "alice").await;

    // 1 MB goes up in one PUT, 20 MB in multipart chunks.
    let mut ids = Vec::new();
    for (seed, len) in [(1, 1 << 20), (2, 20 << 20)] {
        let body = content(seed, len);
        let r = http
            .post(format!("{lb}/traces"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "upload of {len} bytes: {}",
            r.text().await.unwrap()
        );
        let meta: Value = r.json().await.unwrap();
        let id = meta["id"].as_i64().unwrap();
        assert_eq!(meta["size"], len as i64);
        let back = http
            .get(format!("{lb}/traces/{id}/content"))
            .send()
            .await
            .unwrap();
        assert_eq!(back.status(), 200);
        assert!(
            back.bytes().await.unwrap() == body,
            "trace {id} read back different bytes"
        );
        ids.push((id, len));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, len) in ids {
        loop {
            let t: Value = http
                .get(format!("{lb}/traces/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if t["analysis_status"] == "done" {
                assert_eq!(t["analysis"]["bytes"], len as i64);
                assert_eq!(t["analysis"]["sha256_ok"], true);
                assert_eq!(t["owner"], "alice");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "trace {id} not analysed in 30 s: {t}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let absent = http
        .get(format!("{lb}/traces/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 404);
    run.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_follow_secret_key_across_app_servers() {
    let mut run = common::start("web-ha").await;
    let (app1, app2) = (url(&run, "app1", 8080, ""), url(&run, "app2", 8080, ""));
    let http = client();

    let r = login(&http, &app1, "bob").await;
    assert_eq!(served_by(&r), "app1");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // Stateless sessions: app2 accepts app1's cookie, directly (not through the LB).
    let me = http.get(format!("{app2}/me")).send().await.unwrap();
    assert_eq!(served_by(&me), "app2");
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["user"], "bob");

    // A web process with another SECRET_KEY (the environment overrides the config file) rejects
    // the cookie, and accepts its own.
    let other_key = "ab".repeat(32);
    let script = format!(
        "SECRET_KEY={other_key} web --config /etc/hadrill/web.conf serve --listen 127.0.0.1:8099 >/tmp/other.log 2>&1 & P=$!; \
         for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8099/healthz && break; sleep 0.1; done; \
         printf 'foreign=%s ' $(curl -s -o /dev/null -w '%{{http_code}}' -b '{cookie}' http://127.0.0.1:8099/me); \
         curl -s -c /tmp/jar -H 'content-type: application/json' -d '{{\"user\":\"eve\"}}' -o /dev/null http://127.0.0.1:8099/login; \
         printf 'own=%s' $(curl -s -o /dev/null -w '%{{http_code}}' -b /tmp/jar http://127.0.0.1:8099/me); \
         kill $P"
    );
    let out = run
        .node("app2")
        .unwrap()
        .exec(&["sh", "-c", &script])
        .await
        .unwrap();
    assert_eq!(out.output.trim(), "foreign=401 own=200", "{}", out.output);

    // And the real app servers reject a cookie signed with that other key.
    let jar = "/tmp/jar";
    let forged = run
        .node("app2")
        .unwrap()
        .exec(&[
            "sh",
            "-c",
            &format!("curl -s -o /dev/null -w '%{{http_code}}' -b {jar} http://127.0.0.1:8080/me"),
        ])
        .await
        .unwrap();
    assert_eq!(
        forged.output.trim(),
        "401",
        "app2 accepted a cookie signed with another key"
    );

    // A graceful stop of a web process exits 0.
    let app1_node = run.node("app1").unwrap();
    app1_node.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(app1_node.status().await.unwrap().exit_code, Some(0));
    run.teardown().await.unwrap();
}

async fn pool(run: &Run) -> deadpool_postgres::Pool {
    let addr = run.node("db").unwrap().host_addr(5432).unwrap();
    let password = run.secret("DB_PASSWORD").unwrap();
    hadrill_sut::db::connect(&DatabaseConfig {
        url: format!("postgresql://app:{password}@{addr}/traces"),
        sslmode: SslMode::Disable,
        sslcert: None,
        sslkey: None,
        sslrootcert: None,
        schema: "public".into(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_are_idempotent_and_historian_slots_unique_and_caught_up() {
    let mut run = common::start("web-ha").await;
    let pool = pool(&run).await;
    let mut db = pool.get().await.unwrap();

    // The same job twice: two attempts recorded, one result.
    let id: i64 = db
        .query_one(
            "INSERT INTO traces (sha256, size, owner, object_key) VALUES ('x', 1, 'test', 'k') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let a = hadrill_sut::analysis::analyse(b"x\n", "x");
    assert!(
        hadrill_sut::analysis::record(&mut db, id, &a, "w1")
            .await
            .unwrap()
    );
    assert!(
        !hadrill_sut::analysis::record(&mut db, id, &a, "w2")
            .await
            .unwrap()
    );
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM analyses WHERE trace_id = $1),
                    (SELECT count(*) FROM analysis_attempts WHERE trace_id = $1),
                    (SELECT worker FROM analyses WHERE trace_id = $1)",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 2));
    assert_eq!(row.get::<_, String>(2), "w1", "the first result wins");

    // Two historians racing (the real services node and these two passes) never write a slot
    // twice.
    let other = pool.get().await.unwrap();
    let (x, y) = tokio::join!(
        hadrill_sut::schedule::catch_up(&db, "racer-a", None),
        hadrill_sut::schedule::catch_up(&other, "racer-b", None)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(
        x.iter().all(|s| !y.contains(s)),
        "a slot was written twice: {x:?} {y:?}"
    );

    // The services node down for 6 s (3 slots): afterwards every slot is there exactly once.
    let services = run.node("services").unwrap();
    services.kill().await.unwrap();
    let down_at: i64 = db
        .query_one(
            "SELECT floor(extract(epoch FROM clock_timestamp()) / 2)::bigint",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    services.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let row = db
        .query_one(
            "SELECT min(slot), max(slot), count(*), count(DISTINCT slot),
                    count(*) FILTER (WHERE slot BETWEEN $1 AND $1 + 2 AND computed_at > to_timestamp(($1 + 3) * 2))
               FROM rollups",
            &[&down_at],
        )
        .await
        .unwrap();
    let (min, max, n, distinct, late): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(n, distinct);
    assert_eq!(
        n,
        max - min + 1,
        "slots {min}..={max} have gaps: only {n} rows"
    );
    assert!(
        max >= down_at + 3,
        "the historian did not resume after the outage"
    );
    assert!(
        late >= 2,
        "slots missed during the outage were not caught up afterwards ({late})"
    );
    run.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_variant_proxies_api_and_ui_over_tls_1_2_only() {
    let mut run = common::start("web-ha-nginx").await;
    // From a node on the LB's network, as a browser or agent would reach it.
    let script = "curl -sk -o /dev/null -w 'api=%{http_code} ' https://lb/api/healthz; \
                  curl -sk -o /dev/null -w 'ui=%{http_code} ' https://lb/readyz; \
                  curl -sk --tls-max 1.1 -o /dev/null -w 'tls11=%{http_code}' https://lb/healthz; true";
    let out = run
        .node("app1")
        .unwrap()
        .exec(&["sh", "-c", script])
        .await
        .unwrap();
    assert_eq!(
        out.output.trim(),
        "api=200 ui=200 tls11=000",
        "{}",
        out.output
    );

    // A server that stops answering is skipped (passive check) and requests keep succeeding.
    run.node("app2").unwrap().kill().await.unwrap();
    let lb = run.node("lb").unwrap().host_addr(80).unwrap();
    for i in 0..10 {
        let r = reqwest::get(format!("http://{lb}/api/healthz"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i} after killing app2");
        assert_eq!(served_by(&r), "app1");
    }
    run.teardown().await.unwrap();
}

/// The proof that continuity can fail end to end: a product that answers 201 before storing
/// the object loses acknowledged writes when an app server is killed, and the scenario fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_product_acknowledging_before_storing_fails_continuity() {
    let (results, continuity) = run_fixture("broken-kill-app.toml").await;
    assert_eq!(
        continuity.verdict,
        hadrill::model::Verdict::Fail,
        "{}",
        continuity.summary
    );
    assert!(
        continuity.figures["lost"].as_u64().unwrap() > 0,
        "{}",
        continuity.figures
    );
    assert_eq!(results.verdict, hadrill::model::Verdict::Fail);
}

/// `[http]` against real containers: uploads in flight on a paused app server end `unknown`
/// (the client gave up after 2 s), and the generic continuity keeps them apart: never counted
/// as acknowledged, never as lost; every acknowledged upload is read back and verified.
#[tokio::test(flavor = "multi_thread")]
async fn http_workload_keeps_unknown_writes_apart_from_acknowledged_and_lost() {
    let (results, continuity) = run_fixture("http-unknowns.toml").await;
    let upload = &continuity.figures["kinds"]["upload"];
    let events = hadrill::history::History::load(&results.run_dir.join("history.jsonl")).unwrap();
    let uploads: Vec<_> = hadrill::model::ops(&events)
        .into_iter()
        .filter(|o| o.kind.as_str() == "upload")
        .collect();
    let count = |outcome| uploads.iter().filter(|o| o.outcome == outcome).count() as u64;
    assert!(
        count(hadrill::Outcome::Unknown) > 0,
        "no upload ended unknown: {upload}"
    );
    assert_eq!(
        upload["acknowledged"].as_u64(),
        Some(count(hadrill::Outcome::Ok)),
        "{upload}"
    );
    assert_eq!(upload["lost"].as_u64(), Some(0), "{upload}");
    assert_eq!(
        upload["verified"].as_u64(),
        Some(count(hadrill::Outcome::Ok)),
        "{upload}"
    );
    assert_eq!(
        continuity.verdict,
        hadrill::model::Verdict::Pass,
        "{}",
        continuity.summary
    );
}

/// Runs the scenario `file` of the fixtures; its results and its continuity check.
/// Whether an answer that does not acknowledge is a refusal is the product's to say. A store
/// that keeps every fifth write and answers it 503: declared definite, the 503s are refusals
/// and the writes present anyway fail continuity (the negative control); undeclared, they are
/// `unknown` and continuity passes (no false alarm on a product that promised nothing).
#[tokio::test(flavor = "multi_thread")]
async fn a_status_is_a_refusal_only_when_the_product_declares_it_definite() {
    let (results, declared) = run_fixture("refused-but-stored.toml").await;
    assert_eq!(
        declared.verdict,
        hadrill::model::Verdict::Fail,
        "{declared:?}"
    );
    assert!(
        declared
            .summary
            .contains("`put` writes refused by the server are present anyway"),
        "{}",
        declared.summary
    );
    assert_eq!(
        results.verdict,
        hadrill::model::Verdict::Pass,
        "expect_fail"
    );

    let (_, undeclared) = run_fixture("refusals-undeclared.toml").await;
    assert_eq!(
        undeclared.verdict,
        hadrill::model::Verdict::Pass,
        "{undeclared:?}"
    );
    let put = &undeclared.figures["kinds"]["put"];
    assert!(
        put["unknown_that_took_effect"].as_u64().unwrap() > 0,
        "{put}"
    );
    assert_eq!(put["lost"].as_u64(), Some(0), "{put}");
}

async fn run_fixture(file: &str) -> (hadrill::Results, hadrill::CheckResult) {
    let path = common::root().join("harness/tests/fixtures").join(file);
    let scenario =
        hadrill::scenario::Scenario::load(&common::root(), path.to_str().unwrap()).unwrap();
    let results = scenario.run(&common::options()).await.unwrap();
    println!("{}", results.summary());
    let continuity = results
        .checks
        .iter()
        .find(|c| c.check == "continuity")
        .cloned()
        .unwrap();
    (results, continuity)
}
