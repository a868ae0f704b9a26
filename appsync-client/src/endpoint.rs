//! Place in the data path: where a client finds AppSync's two doors, the
//! GraphQL endpoint (`sendPrompt`, `publishChunk`) and the real-time endpoint
//! (`onChunk`, `onCancel`), one derived from the other.

/// The real-time endpoint of the AppSync API whose GraphQL endpoint is
/// `graphql_url`, per
/// <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>:
/// - `https://X.appsync-api.R.amazonaws.com/graphql` ->
///   `wss://X.appsync-realtime-api.R.amazonaws.com/graphql`;
/// - any other host (a custom domain, a local stand-in) ->
///   `wss://HOST/graphql/realtime` for https, `ws://HOST/graphql/realtime` for
///   http, port kept.
///
/// `None` when `graphql_url` is not an absolute http(s) URL.
pub fn realtime_url_for(graphql_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(graphql_url).ok()?;
    let scheme = match url.scheme() {
        "https" => "wss",
        "http" => "ws",
        _ => return None,
    };
    let host = url.host_str()?;
    if let Some((id, rest)) = host.split_once(".appsync-api.")
        && !id.is_empty()
        && (rest.ends_with(".amazonaws.com") || rest.ends_with(".amazonaws.com.cn"))
    {
        return Some(format!("wss://{id}.appsync-realtime-api.{rest}/graphql"));
    }
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some(format!("{scheme}://{authority}/graphql/realtime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_urls_are_derived_from_the_graphql_url() {
        assert_eq!(
            realtime_url_for("https://abc123.appsync-api.eu-west-1.amazonaws.com/graphql")
                .as_deref(),
            Some("wss://abc123.appsync-realtime-api.eu-west-1.amazonaws.com/graphql")
        );
        assert_eq!(
            realtime_url_for("https://api.example.com/graphql").as_deref(),
            Some("wss://api.example.com/graphql/realtime"),
            "a custom domain"
        );
        assert_eq!(
            realtime_url_for("http://127.0.0.1:4000/graphql").as_deref(),
            Some("ws://127.0.0.1:4000/graphql/realtime"),
            "the local devstack"
        );
        assert_eq!(
            realtime_url_for("https://x.appsync-api.example.org/graphql").as_deref(),
            Some("wss://x.appsync-api.example.org/graphql/realtime"),
            "not an AWS host"
        );
        assert_eq!(realtime_url_for("ftp://x/graphql"), None);
        assert_eq!(realtime_url_for("nonsense"), None);
    }
}
