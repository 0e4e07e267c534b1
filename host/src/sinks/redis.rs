//! The Redis online store: each flush is one pipeline of `SET key value EX ttl`
//! (or plain `SET` when the update's TTL is 0) and `DEL key` for tombstones.
//! The HTTP API reads features back with `GET`.

use redis::aio::MultiplexedConnection;

use super::SinkError;
use crate::pipeline::FeatureUpdate;

/// A connection to the online store.
#[derive(Clone)]
pub struct RedisSink {
    conn: MultiplexedConnection,
}

impl RedisSink {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self { conn })
    }

    /// Writes `updates` in one pipeline and waits for every reply.
    pub async fn write(&mut self, updates: &[FeatureUpdate]) -> Result<(), SinkError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for u in updates {
            match &u.value {
                Some(v) if u.ttl_secs > 0 => pipe.set_ex(&u.key, v, u.ttl_secs).ignore(),
                Some(v) => pipe.set(&u.key, v).ignore(),
                None => pipe.del(&u.key).ignore(),
            };
        }
        pipe.query_async::<()>(&mut self.conn).await?;
        Ok(())
    }

    /// Reads the value at `key` (`GET`), for the feature-serving API.
    pub async fn get(&self, key: &str) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(value)
    }
}
