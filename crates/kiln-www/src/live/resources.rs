//! What a live client receives for an event: the resource it changed, in its REST shape, under
//! each of Buildbot's routing keys for that resource (`builds/10/new` is also
//! `builders/1/builds/4/new` and `workers/1/builds/10/new`).

use kiln_api::{ReadSide, shapes};
use kiln_core::{BuildId, BuildRequestId, BuildSetId, LogId, StepId};
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{Db, DbError};
use serde_json::{Value, json};

/// One message for live clients: a routing key, slash-separated as clients subscribe, and the
/// resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub key: String,
    pub message: Value,
}

/// The frames for the event with the dotted routing key `key` (`builds.10.finished`). Events
/// that only kiln itself uses, and resources already gone, give none.
pub async fn frames(read: &dyn ReadSide, key: &str) -> Result<Vec<Frame>, DbError> {
    let parts: Vec<&str> = key.split('.').collect();
    let [collection, id, verb] = parts.as_slice() else {
        return Ok(Vec::new());
    };
    let Ok(id) = id.parse::<i64>() else {
        return Ok(Vec::new());
    };
    let db = read.db();
    let frames = match *collection {
        "builds" => build(db, id, build_verb(verb)).await?,
        "steps" => step(db, id, verb).await?,
        "logs" => log(db, id, verb).await?,
        "buildrequests" => request(db, id, request_verb(verb)).await?,
        "buildsets" if matches!(*verb, "new" | "complete") => buildset(db, id, verb).await?,
        "changes" => change(db, id, verb).await?,
        "workers" => worker(db, id, verb).await?,
        "masters" => master(db, id, verb).await?,
        "builders" => builder(db, id, verb).await?,
        "schedulers" if *verb == "updated" => scheduler(db, id, verb).await?,
        "test_result_sets" => test_result_set(db, id, verb).await?,
        _ => Vec::new(),
    };
    Ok(frames)
}

fn frame(key: String, message: &Value) -> Frame {
    Frame {
        key,
        message: message.clone(),
    }
}

/// kiln's build events as Buildbot names them: a change of state string or lock time is an
/// `update`.
fn build_verb(verb: &str) -> &str {
    match verb {
        "updated" => "update",
        other => other,
    }
}

/// A cancelled request completes, as Buildbot says; a new priority is an update.
fn request_verb(verb: &str) -> &str {
    match verb {
        "canceled" => "complete",
        "updated" => "update",
        other => other,
    }
}

async fn build(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(b) = db.get_build(BuildId(id)).await? else {
        return Ok(Vec::new());
    };
    let m = shapes::build(&b);
    let mut out = vec![
        frame(
            format!("builders/{}/builds/{}/{verb}", b.builderid.0, b.number),
            &m,
        ),
        frame(format!("builds/{id}/{verb}"), &m),
    ];
    if let Some(w) = b.workerid {
        out.push(frame(format!("workers/{w}/builds/{id}/{verb}"), &m));
    }
    Ok(out)
}

async fn step(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(s) = db.get_step(StepId(id)).await? else {
        return Ok(Vec::new());
    };
    let m = shapes::step(&s);
    Ok(vec![
        frame(format!("builds/{}/steps/{id}/{verb}", s.buildid.0), &m),
        frame(format!("steps/{id}/{verb}"), &m),
    ])
}

async fn log(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(l) = db.get_log(LogId(id)).await? else {
        return Ok(Vec::new());
    };
    let m = shapes::log(&l);
    Ok(vec![
        frame(format!("logs/{id}/{verb}"), &m),
        frame(format!("steps/{}/logs/{}/{verb}", l.stepid.0, l.slug), &m),
    ])
}

async fn request(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(r) = db.get_buildrequest(BuildRequestId(id)).await? else {
        return Ok(Vec::new());
    };
    let m = shapes::buildrequest(&r);
    Ok(vec![
        frame(
            format!(
                "buildsets/{}/builders/{}/buildrequests/{id}/{verb}",
                r.buildsetid.0, r.builderid
            ),
            &m,
        ),
        frame(format!("buildrequests/{id}/{verb}"), &m),
        frame(
            format!("builders/{}/buildrequests/{id}/{verb}", r.builderid),
            &m,
        ),
    ])
}

async fn buildset(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(bs) = db.get_buildset(BuildSetId(id)).await? else {
        return Ok(Vec::new());
    };
    let stamps = db
        .buildset_sourcestamps(bs.id)
        .await?
        .iter()
        .map(shapes::sourcestamp)
        .collect();
    let m = shapes::buildset(&bs, stamps);
    Ok(vec![frame(format!("buildsets/{id}/{verb}"), &m)])
}

async fn change(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(c) = db
        .list_changes(&Page::eq("changeid", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    let stamp = db
        .get_sourcestamps(&[c.sourcestampid])
        .await?
        .first()
        .map(shapes::sourcestamp)
        .unwrap_or(Value::Null);
    let m = shapes::change(&c, stamp);
    Ok(vec![frame(format!("changes/{id}/{verb}"), &m)])
}

async fn worker(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(w) = db
        .list_workers(&Page::eq("id", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    Ok(vec![frame(
        format!("workers/{id}/{verb}"),
        &shapes::worker(&w),
    )])
}

async fn master(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(m) = db
        .list_masters(&Page::eq("id", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    Ok(vec![frame(
        format!("masters/{id}/{verb}"),
        &shapes::master(&m),
    )])
}

async fn builder(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(b) = db
        .list_builders(&Page::eq("id", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    let m = json!({"builderid": id, "masterid": b.masterids.first(), "name": b.name});
    Ok(vec![frame(format!("builders/{id}/{verb}"), &m)])
}

async fn scheduler(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(s) = db
        .list_schedulers(&Page::eq("id", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    Ok(vec![frame(
        format!("schedulers/{id}/{verb}"),
        &shapes::scheduler(&s, None),
    )])
}

async fn test_result_set(db: &Db, id: i64, verb: &str) -> Result<Vec<Frame>, DbError> {
    let Some(t) = db
        .list_test_result_sets(&Page::eq("id", SqlValue::Int(id)))
        .await?
        .0
        .pop()
    else {
        return Ok(Vec::new());
    };
    Ok(vec![frame(
        format!("test_result_sets/{id}/{verb}"),
        &shapes::test_result_set(&t),
    )])
}
