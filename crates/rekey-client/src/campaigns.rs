//! `/api/v1/campaigns`: incident campaigns.

use crate::{seg, Client, Result, NO_QUERY};
use rekey_api::{
    CampaignItemQuery, CampaignItemView, CampaignLinks, CampaignList, CampaignPlan,
    CampaignPlanRefresh, CampaignQuery, CampaignView, ConfirmCampaignItem, CreateCampaign,
    RefreshCampaignPlan, SkipCampaignItem,
};
use reqwest::Method;

impl Client {
    /// `POST /api/v1/campaigns`: a draft campaign.
    pub async fn create_campaign(&self, req: &CreateCampaign) -> Result<CampaignView> {
        self.post_json("/api/v1/campaigns", req).await
    }

    /// `GET /api/v1/campaigns`: one page, newest first.
    pub async fn list_campaigns(&self, query: &CampaignQuery) -> Result<CampaignList> {
        self.get("/api/v1/campaigns", query).await
    }

    /// `GET /api/v1/campaigns/{id}`: the campaign and its progress.
    pub async fn get_campaign(&self, id: &str) -> Result<CampaignView> {
        self.get(&format!("/api/v1/campaigns/{}", seg(id)), NO_QUERY)
            .await
    }

    /// `GET /api/v1/campaigns/{id}/plan`: one page of the plan.
    pub async fn campaign_plan(&self, id: &str, query: &CampaignItemQuery) -> Result<CampaignPlan> {
        self.get(&format!("/api/v1/campaigns/{}/plan", seg(id)), query)
            .await
    }

    /// `POST /api/v1/campaigns/{id}/{action}` with `action` one of
    /// `start`, `pause`, `resume`, `cancel`.
    pub async fn campaign_control(&self, id: &str, action: &str) -> Result<CampaignView> {
        self.post::<_, _, ()>(
            &format!("/api/v1/campaigns/{}/{}", seg(id), seg(action)),
            NO_QUERY,
            None,
            None,
        )
        .await
    }

    /// `POST /api/v1/campaigns/{id}/refresh-plan`.
    pub async fn refresh_campaign_plan(
        &self,
        id: &str,
        req: &RefreshCampaignPlan,
    ) -> Result<CampaignPlanRefresh> {
        self.post_json(&format!("/api/v1/campaigns/{}/refresh-plan", seg(id)), req)
            .await
    }

    /// `POST /api/v1/campaigns/{id}/items/{connection_id}/confirm`.
    pub async fn confirm_campaign_item(
        &self,
        id: &str,
        connection_id: &str,
        req: &ConfirmCampaignItem,
    ) -> Result<CampaignItemView> {
        self.post_json(
            &format!(
                "/api/v1/campaigns/{}/items/{}/confirm",
                seg(id),
                seg(connection_id)
            ),
            req,
        )
        .await
    }

    /// `POST /api/v1/campaigns/{id}/items/{connection_id}/skip`.
    pub async fn skip_campaign_item(
        &self,
        id: &str,
        connection_id: &str,
        req: &SkipCampaignItem,
    ) -> Result<CampaignItemView> {
        self.post_json(
            &format!(
                "/api/v1/campaigns/{}/items/{}/skip",
                seg(id),
                seg(connection_id)
            ),
            req,
        )
        .await
    }

    /// `GET /api/v1/campaigns/{id}/links`: one page of the owners' links.
    pub async fn campaign_links(&self, id: &str, query: &CampaignQuery) -> Result<CampaignLinks> {
        self.get(&format!("/api/v1/campaigns/{}/links", seg(id)), query)
            .await
    }

    /// `POST /api/v1/campaigns/{id}/links/{connection_id}`: a new link
    /// (`resend`), or `DELETE` it (cancel).
    pub async fn campaign_link(
        &self,
        id: &str,
        connection_id: &str,
        resend: bool,
    ) -> Result<CampaignItemView> {
        let path = format!("/api/v1/campaigns/{}/links/{}", seg(id), seg(connection_id));
        if resend {
            self.post::<_, _, ()>(&path, NO_QUERY, None, None).await
        } else {
            self.expect(self.request(Method::DELETE, &path)).await
        }
    }
}
