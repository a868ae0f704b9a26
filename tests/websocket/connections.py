"""Calls a WebSocket API's @connections endpoint with botocore, as a Python
backend would: PostToConnection, GetConnection, then PostToConnection to a
connection that does not exist.

Place in the data path: a backend --PostToConnection (SigV4 by botocore)-->
API Gateway's @connections --> the client's WebSocket.

Usage: python connections.py ENDPOINT CONNECTION_ID MESSAGE
(credentials and region from the environment). Prints one JSON object.
"""

import json
import sys

import botocore.session


def main():
    endpoint, connection_id, message = sys.argv[1:4]
    client = botocore.session.get_session().create_client(
        "apigatewaymanagementapi", endpoint_url=endpoint
    )
    client.post_to_connection(ConnectionId=connection_id, Data=message.encode())
    described = client.get_connection(ConnectionId=connection_id)
    try:
        client.post_to_connection(ConnectionId="notAConnection=", Data=b"x")
        gone = None
    except client.exceptions.GoneException as error:
        gone = error.response["Error"]["Code"]
    print(
        json.dumps(
            {
                "connectedAt": described["ConnectedAt"].isoformat(),
                "sourceIp": described["Identity"]["SourceIp"],
                "gone": gone,
            }
        )
    )


if __name__ == "__main__":
    main()
