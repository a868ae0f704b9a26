//! Place in the data path: where conversations will be kept, resolver
//! --DynamoDB JSON protocol--> local DynamoDB. The devstack's DynamoDB is a
//! real DynamoDB-protocol server (dynalite), reached here with the AWS SDK
//! unchanged: the template's table exists with its key schema, a condition
//! expression is enforced, and items survive a restart. (dynalite has no
//! TTL; see `devstack::dynamodb::ensure_table`.)

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use devstack::dynamodb::LocalDynamoDb;
use devstack::testing::dynamodb_config as config;

fn item(pk: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ]
    .into()
}

#[tokio::test]
async fn the_template_table_exists_enforces_conditions_and_survives_a_restart() {
    let data = std::env::temp_dir().join(format!("devstack-dynamodb-{}", uuid::Uuid::new_v4()));
    let dynamodb = LocalDynamoDb::start(config(&data)).await.expect("starts");
    let client = dynamodb.client();

    let table = client
        .describe_table()
        .table_name("ConversationsTable")
        .send()
        .await
        .expect("the template's table exists")
        .table
        .expect("a description");
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        [("pk".into(), KeyType::Hash), ("sk".into(), KeyType::Range)]
    );
    // listConversations' index, made with the table.
    let indexes: Vec<_> = table
        .local_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, ["byUpdatedAt"]);
    let claim = || {
        client
            .put_item()
            .table_name("ConversationsTable")
            .set_item(Some(item("sub-1#conv-1", "TURN#t1")))
            .condition_expression("attribute_not_exists(pk)")
    };
    claim().send().await.expect("the first claim is written");
    let again = claim()
        .send()
        .await
        .expect_err("the second claim is refused");
    assert!(
        again
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{again:?}"
    );
    dynamodb.shutdown().await;

    let restarted = LocalDynamoDb::start(config(&data))
        .await
        .expect("starts again");
    let found = restarted
        .client()
        .get_item()
        .table_name("ConversationsTable")
        .set_key(Some(item("sub-1#conv-1", "TURN#t1")))
        .send()
        .await
        .expect("read after the restart")
        .item;
    assert!(found.is_some(), "the item survived the restart");
    restarted.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
