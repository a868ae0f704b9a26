//! The function URL's own semantics, without a function: the event it
//! builds, the prelude it reads, and its CORS headers.

use axum::http::Request as HttpRequest;

use super::*;

fn parts(request: HttpRequest<()>) -> axum::http::request::Parts {
    request.into_parts().0
}

fn peer() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], 50000))
}

#[test]
fn the_event_is_payload_format_2_0() {
    let request = HttpRequest::post("/chat/path?a=1&b=2&a=3")
        .header("Content-Type", "application/json")
        .header("X-Custom", "one")
        .header("x-custom", "two")
        .header("cookie", "k1=v1; k2=v2")
        .header("host", "abc.lambda-url.us-east-1.on.aws")
        .body(())
        .expect("a request");
    let event = event(&parts(request), &Bytes::from_static(b"{\"p\":1}"), peer());
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/chat/path");
    assert_eq!(event["rawQueryString"], "a=1&b=2&a=3");
    assert_eq!(
        event["queryStringParameters"],
        json!({"a": "1,3", "b": "2"})
    );
    assert_eq!(event["headers"]["x-custom"], "one,two");
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(event["headers"].get("cookie").is_none());
    assert_eq!(event["cookies"], json!(["k1=v1", "k2=v2"]));
    assert_eq!(event["body"], "{\"p\":1}");
    assert_eq!(event["isBase64Encoded"], false);
    let context = &event["requestContext"];
    assert_eq!(context["http"]["method"], "POST");
    assert_eq!(context["http"]["sourceIp"], "203.0.113.7");
    assert_eq!(context["stage"], "$default");
    assert_eq!(context["domainName"], "abc.lambda-url.us-east-1.on.aws");
}

#[test]
fn binary_and_untyped_bodies_are_base64() {
    for content_type in [Some("application/octet-stream"), None] {
        let mut request = HttpRequest::post("/");
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let request = request.body(()).expect("a request");
        let event = event(&parts(request), &Bytes::from_static(b"hi"), peer());
        assert_eq!(event["isBase64Encoded"], true, "{content_type:?}");
        assert_eq!(event["body"], "aGk=");
    }
    let request = HttpRequest::get("/").body(()).expect("a request");
    let event = event(&parts(request), &Bytes::new(), peer());
    assert_eq!(event["body"], Value::Null);
    assert_eq!(event["queryStringParameters"], Value::Null);
}

async fn respond_to(frames: Vec<StreamFrame>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let (sender, streamed) = StreamedResponse::channel(Some(HTTP_INTEGRATION.to_owned()));
    tokio::spawn(async move {
        for frame in frames {
            let _ = sender.send(frame).await;
        }
    });
    let response = respond(streamed).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_else(|_| b"<cut>".to_vec());
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn the_prelude_gives_status_and_headers_even_split_across_frames() {
    let prelude =
        br#"{"statusCode":201,"headers":{"content-type":"text/event-stream"},"cookies":["a=b"]}"#;
    let first = prelude[..10].to_vec();
    let mut second = prelude[10..].to_vec();
    second.extend_from_slice(&[0; 4]);
    let mut third = vec![0; 4];
    third.extend_from_slice(b"data");
    let (status, headers, body) = respond_to(vec![
        StreamFrame::Data(first.into()),
        StreamFrame::Data(second.into()),
        StreamFrame::Data(third.into()),
        StreamFrame::Data(Bytes::from_static(b" more")),
    ])
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["set-cookie"], "a=b");
    assert_eq!(body, b"data more");
}

#[tokio::test]
async fn a_missing_prelude_is_a_bad_gateway_and_a_mid_stream_error_cuts_the_body() {
    let (status, _, _) = respond_to(vec![StreamFrame::Data(Bytes::from_static(b"{}"))]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let mut start = br#"{"statusCode":200}"#.to_vec();
    start.extend_from_slice(&[0; 8]);
    let (status, _, body) = respond_to(vec![
        StreamFrame::Data(start.into()),
        StreamFrame::Data(Bytes::from_static(b"partial")),
        StreamFrame::Error {
            error_type: "Runtime.StreamError".into(),
            message: "boom".into(),
        },
    ])
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"<cut>");
}

#[test]
fn cors_headers_replace_the_functions_for_allowed_origins_only() {
    let cors = Cors {
        allow_origins: vec!["https://app.example".into()],
        allow_methods: vec!["POST".into()],
        allow_headers: vec!["authorization".into()],
        expose_headers: vec!["content-type".into()],
        allow_credentials: true,
        max_age: 60,
    };
    let mut headers = HeaderMap::new();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    apply_cors(&cors, "https://app.example", &mut headers);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-expose-headers"], "content-type");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "60");
    assert_eq!(headers["vary"], "Origin");

    let mut headers = HeaderMap::new();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    apply_cors(&cors, "https://evil.example", &mut headers);
    assert!(headers.get("access-control-allow-origin").is_none());
}
