//! The db-ha topology (toward issue #5): Patroni promotes the synchronous standby when the
//! primary is SIGKILLed, HAProxy routes writes to it, and no acknowledged commit is lost.

mod common;

use std::time::{Duration, Instant};

use hadrill::Run;

async fn connect(run: &Run) -> Option<tokio_postgres::Client> {
    let addr = run.node("dblb").unwrap().host_addr(5432).unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(addr.ip().to_string())
        .port(addr.port())
        .user("postgres")
        .password(run.secret("DB_PASSWORD").unwrap())
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(1));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    Some(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_promotes_the_standby_without_losing_acknowledged_commits() {
    let mut run = common::start("db-ha").await;
    connect(&run)
        .await
        .expect("connect through HAProxy")
        .batch_execute("CREATE TABLE acked (k int PRIMARY KEY)")
        .await
        .unwrap();

    // One writer through the routed endpoint, a new connection after any error; every
    // acknowledged key is kept.
    let started = Instant::now();
    let mut acked = Vec::new();
    let mut client = None;
    let mut killed_at = None;
    let mut resumed_after = None;
    let mut k = 0;
    while started.elapsed() < Duration::from_secs(40)
        && (resumed_after.is_none() || acked.len() < 50 + k / 2)
    {
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(3) {
            let record = run.node("pg1").unwrap().kill().await.unwrap();
            killed_at = Some((Instant::now(), record.start));
        }
        if client.is_none() {
            client = connect(&run).await;
        }
        k += 1;
        let ok = match &client {
            Some(c) => matches!(
                tokio::time::timeout(
                    Duration::from_secs(2),
                    c.execute("INSERT INTO acked VALUES ($1)", &[&(k as i32)])
                )
                .await,
                Ok(Ok(1))
            ),
            None => false,
        };
        if ok {
            acked.push(k as i32);
            if let (Some((at, _)), None) = (killed_at, resumed_after) {
                resumed_after = Some(at.elapsed());
            }
        } else {
            client = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let resumed = resumed_after.expect("writes never resumed after the primary was killed");
    println!(
        "writes resumed {:.2} s after SIGKILL of the primary; {} commits acknowledged",
        resumed.as_secs_f64(),
        acked.len()
    );
    assert!(
        resumed < Duration::from_secs(15),
        "failover took {resumed:?}, budget 15 s"
    );

    let c = connect(&run).await.unwrap();
    let missing: i64 = c
        .query_one("SELECT count(*) FROM unnest($1::int[]) a(k) WHERE NOT EXISTS (SELECT 1 FROM acked WHERE acked.k = a.k)", &[&acked])
        .await
        .unwrap()
        .get(0);
    assert_eq!(missing, 0, "acknowledged commits lost in synchronous mode");
    // The timeline of the WAL being written now (pg_control only shows it after a checkpoint).
    let timeline: i32 = c
        .query_one(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        timeline >= 2,
        "the new primary should be on a new timeline, is on {timeline}"
    );
    let pg2 = run.node("pg2").unwrap().host_addr(8008).unwrap();
    let role = reqwest::get(format!("http://{pg2}/primary"))
        .await
        .unwrap()
        .status();
    assert_eq!(role, 200, "pg2 is the primary now");
    run.teardown().await.unwrap();
}
