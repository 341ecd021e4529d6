//! `/api/v1/rotations` and `POST /api/v1/connections/{id}/rotate`.

use crate::{seg, Client, Result, NO_QUERY};
use rekey_api::{
    CancelRotation, ConfirmRotation, RotationList, RotationQuery, RotationScheduleView,
    RotationView, SetRotationSchedule, StartRotation,
};
use reqwest::Method;

impl Client {
    /// `POST /api/v1/connections/{id}/rotate`: start rotating the
    /// credential (202: it runs in the background; follow it with
    /// [`Client::get_rotation`]).
    pub async fn start_rotation(&self, id: &str, req: &StartRotation) -> Result<RotationView> {
        self.post_json(&format!("/api/v1/connections/{}/rotate", seg(id)), req)
            .await
    }

    /// `POST /api/v1/rotations/{id}/confirm`: the step the rotation waits
    /// for is done at the target (202: it goes on in the background).
    pub async fn confirm_rotation(&self, id: &str, req: &ConfirmRotation) -> Result<RotationView> {
        self.post_json(&format!("/api/v1/rotations/{}/confirm", seg(id)), req)
            .await
    }

    /// `POST /api/v1/rotations/{id}/cancel`.
    pub async fn cancel_rotation(&self, id: &str, req: &CancelRotation) -> Result<RotationView> {
        self.post_json(&format!("/api/v1/rotations/{}/cancel", seg(id)), req)
            .await
    }

    /// `GET /api/v1/rotations/{id}`.
    pub async fn get_rotation(&self, id: &str) -> Result<RotationView> {
        self.get(&format!("/api/v1/rotations/{}", seg(id)), NO_QUERY)
            .await
    }

    /// `GET /api/v1/rotations`: one page, newest first.
    pub async fn list_rotations(&self, query: &RotationQuery) -> Result<RotationList> {
        self.get("/api/v1/rotations", query).await
    }

    /// `PUT /api/v1/connections/{id}/rotation-schedule`.
    pub async fn set_rotation_schedule(
        &self,
        id: &str,
        req: &SetRotationSchedule,
    ) -> Result<RotationScheduleView> {
        self.write(
            Method::PUT,
            &format!("/api/v1/connections/{}/rotation-schedule", seg(id)),
            req,
            None,
        )
        .await
    }

    /// `GET /api/v1/connections/{id}/rotation-schedule`.
    pub async fn get_rotation_schedule(&self, id: &str) -> Result<RotationScheduleView> {
        self.get(
            &format!("/api/v1/connections/{}/rotation-schedule", seg(id)),
            NO_QUERY,
        )
        .await
    }

    /// `DELETE /api/v1/connections/{id}/rotation-schedule`.
    pub async fn delete_rotation_schedule(&self, id: &str) -> Result<()> {
        self.delete(
            &format!("/api/v1/connections/{}/rotation-schedule", seg(id)),
            NO_QUERY,
            None,
        )
        .await
    }
}
