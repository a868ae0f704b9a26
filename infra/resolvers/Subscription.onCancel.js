// Subscription.onCancel: cancelTurn --onCancel(turnId, owner)--> resolver Lambda.
//
// IAM only (the schema's @aws_iam): the resolver Lambda subscribes once per
// turn, and the subscription's own arguments (turnId, owner) select the one
// Cancellation that stops it. Nothing to check or filter here.
// https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-data.html

/**
 * @returns {*} the NONE data source request
 */
export function request() {
  return { payload: null };
}

/**
 * @returns {null} subscriptions resolve to null
 */
export function response() {
  return null;
}
